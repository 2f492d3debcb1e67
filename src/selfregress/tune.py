"""Optuna over a controller's thresholds (ES or CARE), every trial a nested MLflow run.

Reads: the base model, the Optuna storage (its own sqlite file, never MLflow's: both use
alembic, and sharing one file breaks both).
Writes: one study run (``selfregress.kind=tune``) with a nested run per trial (its parameters,
its value, the tag ``trial``), each trial's chains nested under it; at the end the best
parameters, Optuna's optimisation-history and importance plots, and a params file that
``main`` accepts (``-P params_file=...``).

The objective is the mean end-of-chain pass@1 over the tuning seeds, on the selection (eval)
split; trial chains run with ``report_tasks=0``, so the report split is never even evaluated.
The seeds default to 100-102, disjoint from the evaluation seeds 0-4: thresholds picked on the
seeds they are then evaluated on would carry the selection's luck into the reported numbers.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.config import int_list, option, parse
from selfregress.errors import UserError

EVALUATION_SEEDS = frozenset(range(5))

# The search spaces: name -> (kind, low, high). Bounds keep every draw valid for ChainConfig.
SPACES: dict[str, dict[str, tuple[str, float, float]]] = {
    "es": {"es_slack": ("int", 0, 10), "es_min_delta": ("float", 0.0, 0.05),
           "es_patience": ("int", 0, 10)},
    "care": {"care_gate": ("float", 0.3, 0.95), "care_regress": ("float", 0.5, 0.99),
             "care_lr_decay": ("float", 0.1, 0.95), "care_forget": ("float", 0.1, 0.95)},
}


@dataclass(frozen=True)
class TuneConfig:
    """An Optuna study. Every field is an MLproject parameter of `tune`."""
    controller: str = option("es", "whose thresholds are tuned", tuple(SPACES))
    condition: str = option("", "chain condition (default: the controller's own: es or care; grpo_es also works)")
    study_name: str = option("", "Optuna study name (default: selfregress-<controller>)")
    storage: str = option("sqlite:///optuna.db", "Optuna storage URL; must not be the MLflow store")
    n_trials: int = option(20, "total trials the study should reach (a resumed study runs the rest)")
    seeds: str = option("100,101,102", "tuning seeds, comma-separated (keep them disjoint from 0-4)")
    sampler_seed: int = option(0, "seed of the TPE sampler")
    model: str = option("base", "start model of every chain")
    campaigns: int = option(10, "campaigns per chain")
    steps: int = option(20, "steps per campaign")
    eval_tasks: int = option(128, "held-out tasks per evaluation")
    out: str = option("best_params.json", "where the best parameters are written, for -P params_file")

    def validate(self) -> None:
        if self.n_trials < 1:
            raise UserError(f"'n_trials' must be at least 1, got {self.n_trials}")
        if not self.tuning_seeds:
            raise UserError("'seeds' must list at least one seed, e.g. 100,101,102")
        if self.condition and self.condition not in {"es": ("es", "grpo_es"), "care": ("care",)}[self.controller]:
            raise UserError(f"condition {self.condition} does not use the {self.controller} controller")

    @property
    def tuning_seeds(self) -> list[int]:
        return int_list(self.seeds, "seeds")

    @property
    def name(self) -> str:
        return self.study_name or f"selfregress-{self.controller}"


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


def suggest(trial, controller: str) -> dict[str, float | int]:
    params = {}
    for name, (kind, low, high) in SPACES[controller].items():
        params[name] = (trial.suggest_int(name, int(low), int(high)) if kind == "int"
                        else trial.suggest_float(name, low, high))
    return params


def run_study(config: TuneConfig, store, grader, base_model: str, log=print,
              attach_run_id: str | None = None) -> dict:
    """Run (or resume) the study to ``n_trials``; return the best parameters."""
    import optuna

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
                                sampler=optuna.samplers.TPESampler(seed=config.sampler_seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    optuna.storages.fail_stale_trials(study)
    condition = config.condition or config.controller

    existing = store.study_runs(config.name)
    attach = existing[0].info.run_id if existing else attach_run_id
    params = {k: v for k, v in vars(config).items() if k != "out"}
    params["storage"] = redacted(config.storage)
    with store.run(f"tune-{config.name}", "tune", tags={K.STUDY_NAME: config.name, K.STORAGE: redacted(config.storage)},
                   params=params if not existing else None, attach_run_id=attach) as study_run:

        def objective(trial) -> float:
            values = suggest(trial, config.controller)
            with store.run(f"trial-{trial.number}", "trial", parent=study_run,
                           tags={K.TRIAL: trial.number, K.STUDY_NAME: config.name}, params=values) as trial_run:
                ends = []
                for i, seed in enumerate(seeds):
                    chain = parse(ChainConfig, {"condition": condition, "seed": seed, "model": config.model,
                                                "campaigns": config.campaigns, "steps": config.steps,
                                                "eval_tasks": config.eval_tasks, "report_tasks": 0,
                                                **values})
                    chain_id = run_chain(chain, store, grader, base_model, log=lambda m: None, parent=trial_run)
                    ends.append(store.chain_run(chain_id)[0].data.metrics[K.CHAIN_END])
                    mean = sum(ends) / len(ends)
                    trial.report(mean, step=i)                      # per seed, so the pruner can act
                    trial_run.log_metrics({"objective/running_mean": mean}, step=i)
                    if trial.should_prune():
                        trial_run.set_tags({K.OPTUNA_STATE: "PRUNED"})
                        raise optuna.TrialPruned()
                trial_run.log_metrics({"objective/mean_end_pass_at_1": mean}, step=len(seeds))
                log(f"trial {trial.number}: {values} -> mean end pass@1 {mean:.4f}")
                return mean

        done = sum(t.state.is_finished() for t in study.trials)
        remaining = max(0, config.n_trials - done)
        log(f"study {config.name}: {done} trials finished, running up to {remaining} more")
        if remaining:
            # Other processes on the same storage: their running trials count toward the total
            # too, so together they stop at n_trials (each may finish the trial it has begun).
            study.optimize(objective, n_trials=remaining, catch=(),
                           callbacks=[optuna.study.MaxTrialsCallback(config.n_trials, states=None)])
        best = finish_study(study, study_run, config, condition)
    return best


def finish_study(study, study_run, config: TuneConfig, condition: str) -> dict:
    """Log the best parameters and Optuna's plots, and write the params file for `main`."""
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        raise UserError("no trial of the study completed: nothing to report")
    best = {"condition": condition, **study.best_params}
    study_run.log_params({f"best/{k}": v for k, v in study.best_params.items()})
    study_run.log_metrics({"best_value": study.best_value, "trials_complete": float(len(completed))},
                          step=len(study.trials))
    Path(config.out).write_text(json.dumps(best, indent=2) + "\n")
    study_run.log_artifact(config.out)
    with tempfile.TemporaryDirectory() as folder:
        for name, plot in plots(study).items():
            path = Path(folder) / f"{name}.png"
            plot.figure.savefig(path, dpi=100, bbox_inches="tight")
            study_run.log_artifact(path, "optuna")
    return best


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
    plt.close("all")
    return out
