"""Optuna over any of a chain's parameters (by default a controller's thresholds), every trial a nested MLflow run.

Reads: the base model, the Optuna storage (its own sqlite file, never MLflow's: both use
alembic, and sharing one file breaks both).
Writes: one study run (``selfregress.kind=tune``) with a nested run per trial (its parameters,
its value, the tag ``trial``), each trial's chains nested under it; at the end the best
parameters, Optuna's optimisation-history and importance plots, and a params file that
``main`` accepts (``-P params_file=...``).

What the chains share and what is searched: ``chain_params`` / ``params_file`` and ``search``
(``search_space.py``); an empty ``search`` is the controller's own space (ES or CARE thresholds).

The objective (``objective``) is, over the tuning seeds, on the selection (eval) split: ``end``,
the mean end-of-chain pass@1; or ``signature``, min(mean rise, mean fall) over every campaign
of every seed, each the cross-fit figure in sd (``signature.py``: peak picked on one half of the
eval tasks, measured on the other; the min of the means, not the mean of the mins), the regime
search of issue #16. Trial chains run with
``report_tasks=0``, so the report split is never even evaluated.
The seeds default to 100-102, disjoint from the evaluation seeds 0-4: thresholds picked on the
seeds they are then evaluated on would carry the selection's luck into the reported numbers.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.config import int_list, option, parse
from selfregress.errors import UserError
from selfregress.search_space import CONTROLLER_SPACES, Dimension, check_space, parse_chain_params, parse_search

EVALUATION_SEEDS = frozenset(range(5))
SPACES = CONTROLLER_SPACES


@dataclass(frozen=True)
class TuneConfig:
    """An Optuna study. Every field is an MLproject parameter of `tune`."""
    controller: str = option("es", "whose thresholds are searched when 'search' is empty", tuple(SPACES))
    condition: str = option("", "chain condition (default: the controller's own: es or care; grpo_es also works)")
    search: str = option("", "search dimensions, e.g. lr=1e-4:1e-3:log,es_slack=0:5,baseline=none|mean "
                             "(default: the controller's thresholds)")
    chain_params: str = option("", "main parameters fixed for every chain, e.g. batch_size=4,group_size=2")
    params_file: str = option("", "JSON of main parameters fixed for every chain (chain_params win)")
    study_name: str = option("", "Optuna study name (default: selfregress-<controller>)")
    storage: str = option("sqlite:///optuna.db", "Optuna storage URL; must not be the MLflow store")
    n_trials: int = option(20, "total trials the study should reach (a resumed study runs the rest)")
    seeds: str = option("100,101,102", "tuning seeds, comma-separated (keep them disjoint from 0-4)")
    sampler_seed: int = option(0, "seed of the TPE sampler")
    model: str = option("base", "start model of every chain")
    campaigns: int = option(10, "campaigns per chain")
    steps: int = option(20, "steps per campaign")
    eval_tasks: int = option(128, "held-out tasks per evaluation")
    objective: str = option("end", "what a trial maximises: end (mean end-of-chain pass@1) or signature "
                                   "(min(mean cross-fit rise, mean fall) in sd over every campaign: signature.py)",
                            ("end", "signature"))
    out: str = option("best_params.json", "where the best parameters are written, for -P params_file")

    def validate(self) -> None:
        if self.n_trials < 1:
            raise UserError(f"'n_trials' must be at least 1, got {self.n_trials}")
        if not self.tuning_seeds:
            raise UserError("'seeds' must list at least one seed, e.g. 100,101,102")
        if not self.search and self.condition and \
                self.condition not in {"es": ("es", "grpo_es"), "care": ("care",)}[self.controller]:
            raise UserError(f"condition {self.condition} does not use the {self.controller} controller")
        check_space(self.fixed_params, self.dimensions, self.chain_condition)

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        """What the study searches: ``search``, or the controller's thresholds."""
        return parse_search(self.search) if self.search else CONTROLLER_SPACES[self.controller]

    @property
    def fixed_params(self) -> dict:
        """The chain parameters every chain shares: the params file, chain_params on top, then
        model/campaigns/steps/eval_tasks where they differ from their defaults (or are not set)."""
        fixed = parse_chain_params(self.chain_params, self.params_file)
        for name in ("model", "campaigns", "steps", "eval_tasks"):
            if name not in fixed or getattr(self, name) != TuneConfig.__dataclass_fields__[name].default:
                fixed[name] = getattr(self, name)
        return fixed

    @property
    def chain_condition(self) -> str:
        return self.condition or self.controller

    @property
    def tuning_seeds(self) -> list[int]:
        return int_list(self.seeds, "seeds")

    @property
    def name(self) -> str:
        """The study's name: given, or the controller's for its default space, or one per space
        and fixed settings (so that two different searches never share a study's trials)."""
        if self.study_name:
            return self.study_name
        if not self.search and not self.chain_params and not self.params_file and self.objective == "end":
            return f"selfregress-{self.controller}"
        space = json.dumps([self.search, parse_chain_params(self.chain_params, self.params_file)]
                           + ([self.objective] if self.objective != "end" else []), sort_keys=True, default=str)
        return f"selfregress-{self.chain_condition}-{hashlib.sha256(space.encode()).hexdigest()[:8]}"


def check_storage(storage: str, tracking_uri: str) -> None:
    """Refuse an Optuna storage that is the MLflow store (same URL or same sqlite file)."""
    def sqlite_file(url: str) -> Path | None:
        return Path(url[len("sqlite:///"):]).resolve() if url.startswith("sqlite:///") else None

    same_file = sqlite_file(storage) is not None and sqlite_file(storage) == sqlite_file(tracking_uri)
    if storage == tracking_uri or same_file:
        raise UserError(f"the Optuna storage {storage} is the MLflow tracking store: give Optuna its "
                        "own file, e.g. -P storage=sqlite:///optuna.db")


def redacted(url: str) -> str:
    """A storage URL without its password, for the record (postgresql://u:***@host/db)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def suggest(trial, dims: tuple[Dimension, ...]) -> dict:
    return {dim.name: dim.suggest(trial) for dim in dims}


def process_sampler(sampler_seed: int, study):
    """TPE seeded by ``sampler_seed`` plus the number of trials the study already holds.

    Every process that joins a study draws from its own sampler. Seeded alike, two processes
    drew the same parameters for their first trials (TPE's first 10 are random draws from the
    seed): the same chains twice, deterministic, so the same value twice. A fresh study's first
    process keeps ``sampler_seed`` itself; a process that joins or resumes it (after at least one
    trial was asked) draws from another stream, yet reproducibly for the same study history.
    """
    import optuna

    return optuna.samplers.TPESampler(seed=sampler_seed + len(study.trials))


def run_study(config: TuneConfig, store, grader, base_model: str, log=print,
              attach_run_id: str | None = None) -> dict:
    """Run (or resume) the study to ``n_trials``; return the best parameters."""
    import optuna
    from optuna.trial import TrialState

    from selfregress.chain import run_chain
    from selfregress.chain_config import ChainConfig

    check_storage(config.storage, store.uri)
    seeds = config.tuning_seeds
    if EVALUATION_SEEDS & set(seeds):
        log(f"warning: tuning seeds {sorted(EVALUATION_SEEDS & set(seeds))} are evaluation seeds: "
            "the report on seeds 0-4 will be biased by this selection")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(config.storage, heartbeat_interval=30, grace_period=90)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize",
                                load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study.sampler = process_sampler(config.sampler_seed, study)
    optuna.storages.fail_stale_trials(study)
    condition = config.chain_condition
    dims, fixed = config.dimensions, config.fixed_params

    existing = store.study_runs(config.name)
    attach = existing[0].info.run_id if existing else attach_run_id
    params = {k: v for k, v in vars(config).items() if k != "out"}
    params["storage"] = redacted(config.storage)
    tags = {K.STUDY_NAME: config.name, K.STORAGE: redacted(config.storage),
            K.SEARCH_SPACE: ",".join(d.describe() for d in dims), K.NOTE: study_note(config, dims, fixed)}
    with store.run(f"tune-{config.name}", "tune", tags=tags,
                   params=params if not existing else None, attach_run_id=attach) as study_run:

        def objective(trial) -> float:
            values = suggest(trial, dims)
            note = (f"Trial {trial.number} of the Optuna study {config.name}: "
                    f"{', '.join(f'{k}={v}' for k, v in values.items())}; its chains are nested below.")
            with store.run(f"trial-{trial.number}", "trial", parent=study_run, params=values,
                           tags={K.TRIAL: trial.number, K.STUDY_NAME: config.name, K.NOTE: note}) as trial_run:
                measures = []
                for i, seed in enumerate(seeds):
                    chain = parse(ChainConfig, {**fixed, "condition": condition, "seed": seed, "report_tasks": 0,
                                                **values})
                    chain_id = run_chain(chain, store, grader, base_model, log=lambda m: None, parent=trial_run)
                    measure, figures = chain_objective(config.objective, store, chain_id)
                    measures.append(measure)
                    value = trial_value(config.objective, measures)
                    trial.report(value, step=i)                      # per seed, so the pruner can act
                    trial_run.log_metrics({"objective/running_mean": value,
                                           **{f"objective/{k}": v for k, v in figures.items()}}, step=i)
                    if trial.should_prune():
                        trial_run.set_tags({K.OPTUNA_STATE: "PRUNED"})
                        raise optuna.TrialPruned()
                trial_run.log_metrics({f"objective/mean_{OBJECTIVE_NAMES[config.objective]}": value},
                                      step=len(seeds))
                log(f"trial {trial.number}: {values} -> {OBJECTIVE_NAMES[config.objective]} {value:.4f}")
                return value

        # A failed trial (its process died, or the store went away under it) does not count:
        # the study resumes to n_trials trials that completed or were pruned.
        counted = (TrialState.COMPLETE, TrialState.PRUNED)
        done = sum(t.state in counted for t in study.trials)
        remaining = max(0, config.n_trials - done)
        log(f"study {config.name}: {done} trials finished, running up to {remaining} more")
        if remaining:
            # Other processes on the same storage: their running trials count toward the total
            # too, so together they stop at n_trials (each may finish the trial it has begun).
            study.optimize(objective, n_trials=remaining, catch=(),
                           callbacks=[optuna.study.MaxTrialsCallback(
                               config.n_trials, states=(*counted, TrialState.RUNNING, TrialState.WAITING))])
        best = finish_study(study, study_run, config, condition)
    return best


OBJECTIVE_NAMES = {"end": "end_pass_at_1", "signature": "signature_score"}
OBJECTIVE_WORDS = {"end": "the mean end-of-chain pass@1",
                   "signature": "min(mean cross-fit rise, mean cross-fit fall), in sd, over every campaign"}


def chain_objective(objective: str, store, chain_id: str):
    """(what the chain contributes to its trial's value, figures logged beside it at the seed's step):
    its end-of-chain pass@1, or its campaigns' signatures (``signature.chain_figures``)."""
    if objective == "end":
        return store.chain_run(chain_id)[0].data.metrics[K.CHAIN_END], {}
    from selfregress.signature import chain_figures, chain_signatures

    return chain_figures(chain_signatures(store, store.campaign_runs(chain_id, finished=True)))


def trial_value(objective: str, measures: list) -> float:
    """The trial's value over the chains run so far: the mean end pass@1, or for ``signature``
    min(mean rise, mean fall) over all their campaigns (signature.py: the min of the means)."""
    if objective == "end":
        return sum(measures) / len(measures)
    from selfregress.signature import study_score

    return study_score(measures)[0]


def finish_study(study, study_run, config: TuneConfig, condition: str) -> dict:
    """Log the best parameters and Optuna's plots, and write the params file for `main`."""
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        raise UserError("no trial of the study completed: nothing to report")
    # The params file runs the chain the study tuned for: its condition, the fixed settings, the best draw.
    best = {"condition": condition, **parse_chain_params(config.chain_params, config.params_file),
            **study.best_params}
    # Tags, not params: a resumed study may find a new best, and MLflow never changes a param.
    study_run.set_tags({f"best/{k}": v for k, v in study.best_params.items()})
    study_run.log_metrics({"best_value": study.best_value, "trials_complete": float(len(completed))}, step=0)
    Path(config.out).write_text(json.dumps(best, indent=2) + "\n")
    study_run.log_artifact(config.out)
    with tempfile.TemporaryDirectory() as folder:
        for name, plot in plots(study).items():
            path = Path(folder) / f"{name}.png"
            plot.figure.savefig(path, dpi=100, bbox_inches="tight")
            study_run.log_artifact(path, "optuna")
    return best


def study_note(config: TuneConfig, dims: tuple[Dimension, ...], fixed: dict) -> str:
    """The study run's description, in words (``mlflow.note.content``)."""
    shared = ", ".join(f"{k}={v}" for k, v in sorted(fixed.items()))
    return (f"Optuna study **{config.name}**: up to {config.n_trials} trials, each a nested run with one "
            f"{config.chain_condition} chain per tuning seed ({config.seeds}). It searches "
            f"{', '.join(d.describe() for d in dims)} and maximises {OBJECTIVE_WORDS[config.objective]} over "
            f"those seeds (TPE sampler, median pruner). Every chain shares {shared}. The best draw is "
            f"in the best/* tags and in {config.out} (`-P params_file=...` for `main`); Optuna's plots "
            "are under the optuna/ artifacts.")


def plots(study) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    out = {"optimization_history": vis.plot_optimization_history(study)}
    try:  # importance needs at least two completed trials that differ
        out["param_importances"] = vis.plot_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        print(f"tune: no parameter-importance plot ({e})", file=sys.stderr)
    if len({name for t in study.trials for name in t.params}) >= 2:   # one axis per dimension
        out["parallel_coordinate"] = vis.plot_parallel_coordinate(study)
    plt.close("all")
    return out
