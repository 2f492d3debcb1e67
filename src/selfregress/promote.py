"""Promote: the best checkpoint across runs, chosen on a split that selection never saw.

Reads: the selected chains' campaign runs (logged eval pass@1 per step, LoggedModel per step).
Writes: a promote run with every candidate's re-evaluation, and a new version of the
registered model (default ``selfregress``) with the alias ``champion``.

The top-k checkpoints by logged eval pass@1 are the candidates. That logged number is the max
of many noisy evaluations, so it is biased upward (the winner's curse). The candidates are
therefore re-evaluated on a *test* split that no training, evaluation or controller decision
ever used (`records.held_out_tasks`: the synthetic test split, or the tasks of a user source
that the chains' split left over), cut in two disjoint parts (``split_test``): the champion is
the best on the *selection* part, and its score is measured on the *report* part, which chose
nothing. The best of k re-evaluations is itself a maximum, biased upward like the logged peak;
the report part's score is not (tests/test_promote.py simulates both). The version is registered
with the report part's pass@1 and a 95% bootstrap CI over its tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from selfregress import metric_keys as K
from selfregress.chain_config import logged_config
from selfregress.conditions import CONDITIONS
from selfregress.config import option, split_list
from selfregress.errors import UserError
from selfregress.records import campaign_records, held_out_tasks
from selfregress.stats import bootstrap_ci

MODEL_NAME = "selfregress"
ALIAS = "champion"


@dataclass(frozen=True)
class PromoteConfig:
    """Every field is an MLproject parameter of `promote`."""
    sweep_id: str = option("", "only checkpoints of this sweep's chains (default: every finished chain)")
    filter: str = option("", "an extra MLflow filter on the chain runs")
    conditions: str = option("", "comma-separated conditions to pick from (default: all)")
    top_k: int = option(5, "candidates, by logged eval pass@1, re-evaluated on the test split")
    test_tasks: int = option(256, "test-split tasks: the first half selects the champion, the second "
                                  "(disjoint) half reports its score")
    test_samples: int = option(4, "samples per test task")
    seed: int = option(0, "sampling seed of the re-evaluation (the same for every candidate)")
    name: str = option(MODEL_NAME, "registered model name")
    alias: str = option(ALIAS, "alias set on the new version")

    def validate(self) -> None:
        for key in ("top_k", "test_tasks", "test_samples"):
            if getattr(self, key) < 1:
                raise UserError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        if self.test_tasks < 2:
            raise UserError(f"'test_tasks' must be at least 2 (one to select on, one to report on), got {self.test_tasks}")
        unknown = [c for c in self.condition_list if c not in CONDITIONS]
        if unknown:
            raise UserError(f"'conditions': unknown {', '.join(unknown)} (known: {', '.join(CONDITIONS)})")

    @property
    def condition_list(self) -> list[str]:
        return split_list(self.conditions)


@dataclass(frozen=True)
class Candidate:
    model_id: str
    logged_pass_at_1: float
    run_id: str          # the campaign run
    condition: str
    seed: int
    campaign: int
    step: int
    max_new_tokens: int  # the token limit and temperature its chain trained and evaluated with
    temperature: float


def selected_chains(store, config: PromoteConfig) -> list:
    return [r for r in store.finished_chains(config.sweep_id, config.filter)
            if not config.condition_list or r.data.tags[K.CONDITION] in config.condition_list]


def candidates(store, chains: list) -> list[Candidate]:
    """Every checkpointed step of these chains, best logged pass@1 first, one per model."""
    best: dict[str, Candidate] = {}
    for chain in chains:
        tags = chain.data.tags
        for record in campaign_records(store, tags[K.CHAIN_ID]):
            for step, model_id in record.checkpoints.items():
                c = Candidate(model_id, record.pass_at_1[step], record.run_id, tags[K.CONDITION],
                              int(tags[K.SEED]), record.index, step,
                              int(chain.data.params.get("max_new_tokens", 96)),
                              float(chain.data.params.get("temperature", 1.0)))
                # A campaign's step 0 is the previous campaign's checkpoint: keep its best showing.
                if model_id not in best or c.logged_pass_at_1 > best[model_id].logged_pass_at_1:
                    best[model_id] = c
    return sorted(best.values(), key=lambda c: (-c.logged_pass_at_1, c.condition, c.seed, c.campaign, c.step))


def split_test(tasks: list) -> tuple[list, list]:
    """(selection, report): the first half of the test tasks and the rest, disjoint."""
    half = len(tasks) // 2
    return tasks[:half], tasks[half:]


def choose_and_report(candidates: list, score: Callable[[object, list], float], selection: list,
                      report: list) -> tuple[int, list[float], float]:
    """(winner's index, every candidate's selection score, the winner's report score).

    ``score(candidate, tasks)`` -> pass@1. The winner is the first best on ``selection`` (ties:
    the better logged rank); only the winner is scored on ``report``, which must be disjoint
    from ``selection``: that score is then one independent evaluation, free of the selection.
    """
    if {id(t) for t in selection} & {id(t) for t in report}:
        raise ValueError("the selection and report parts of the test split overlap")
    selected = [score(c, selection) for c in candidates]
    winner = max(range(len(candidates)), key=lambda i: (selected[i], -i))
    return winner, selected, score(candidates[winner], report)


def promote(config: PromoteConfig, store, grader, log=print, attach_run_id: str | None = None) -> dict:
    """Select on one part of the test split, register the winner with its score on the other."""
    from selfregress.evaluation import evaluate
    from selfregress.policy import load_policy
    from selfregress.serving import SamplingDefaults, log_servable
    from selfregress.tracking import download_model
    chains = selected_chains(store, config)
    pool = candidates(store, chains)
    if not pool:
        what = f"sweep {config.sweep_id}" if config.sweep_id else "this experiment"
        raise UserError(f"promote: no checkpoints in the finished chains of {what}"
                        f"{' for conditions ' + config.conditions if config.conditions else ''}: "
                        "run `sweep` or `main` (with checkpoints=all or peaks) first")
    test, test_split = held_out_tasks([logged_config(chain.data.params) for chain in chains], config.test_tasks)
    selection, report = split_test(test)
    if not selection:
        raise UserError(f"promote: {test_split} holds {len(test)} task(s): need at least 2, one to select "
                        "the champion on and one to report it on")
    top = pool[:config.top_k]
    results: dict[tuple[int, int], object] = {}   # (candidate, part) -> EvalResult

    def score(c: Candidate, tasks: list) -> float:
        result = evaluate(load_policy(f"models:/{c.model_id}"), tasks, grader, samples=config.test_samples,
                          temperature=c.temperature, max_new_tokens=c.max_new_tokens, seed=config.seed)
        results[(top.index(c), tasks is report)] = result
        return result.pass_at_1

    with store.run("promote", "promote", params=vars(config), attach_run_id=attach_run_id) as run:
        index, selected, reported = choose_and_report(top, score, selection, report)
        for rank, (c, value) in enumerate(zip(top, selected)):
            run.log_metrics({"candidate/logged_pass_at_1": c.logged_pass_at_1,
                             "candidate/selection_pass_at_1": value}, step=rank)
            log(f"candidate {rank}: {c.condition} s{c.seed} c{c.campaign} step {c.step}: logged "
                f"{c.logged_pass_at_1:.3f}, test (selection part) {value:.3f}")
        winner, result = top[index], results[(index, True)]
        ci = bootstrap_ci(result.successes / result.samples, seed=config.seed)
        log(f"champion: candidate {index}, test (report part) {ci.text(digits=1)} %")
        half = len(selection)
        tags = {"source_run": winner.run_id, "condition": winner.condition, "seed": winner.seed,
                "campaign": winner.campaign, "step": winner.step, "model_id": winner.model_id,
                "logged_pass_at_1": f"{winner.logged_pass_at_1:.4f}",
                "selection_pass_at_1": f"{selected[index]:.4f}",
                "test_pass_at_1": f"{ci.mean:.4f}", "test_pass_at_1_ci95": f"[{ci.low:.4f}, {ci.high:.4f}]",
                "test_split": f"{test_split}: selected on its first {half}, reported on the other "
                              f"{len(report)}, x {config.test_samples} samples"}
        # Registered as a servable pyfunc over the winning checkpoint (serving.py); the checkpoint's
        # LoggedModel id, run, campaign and step stay in the tags.
        servable = log_servable(download_model(f"models:/{winner.model_id}"), store.client, store.experiment_id,
                                run_id=run.run_id, name=config.name, tags=tags,
                                defaults=SamplingDefaults(winner.temperature, 1.0, winner.max_new_tokens, config.seed))
        version = store.register(servable[len("models:/"):], config.name, config.alias, tags=tags)
        run.set_tags({K.PROMOTED_VERSION: version, K.PROMOTED_MODEL_ID: winner.model_id,
                      K.SERVABLE_MODEL_ID: servable})
        run.log_metrics({"champion/selection_pass_at_1": selected[index], "champion/test_pass_at_1": ci.mean,
                         "champion/test_ci_low": ci.low, "champion/test_ci_high": ci.high}, step=0)
    return {"uri": f"models:/{config.name}@{config.alias}", "version": version, **tags}
