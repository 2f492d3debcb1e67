"""A chain's records, read back from MLflow, and its task splits: torch-free, for the chain and the readers.

``campaign_records`` is what a controller sees (each FINISHED campaign as a ``CampaignRecord``);
``chain_curve`` and ``chain_summary`` are what the chain run logs and the report reads;
``split_tasks``, ``report_split`` and ``held_out_tasks`` say which tasks a chain trained on,
selected on (the eval split: every decision), reported on (the report split: no decision), and
which none of them saw (promote's test split). The four are pairwise disjoint.
"""

from __future__ import annotations

import functools

import numpy as np

from selfregress import metric_keys as K
from selfregress import datasets
from selfregress.chain_config import ChainConfig
from selfregress.controllers import CampaignRecord
from selfregress.errors import UserError
from selfregress.retention import pruned_steps


def read_campaign(store, run) -> CampaignRecord:
    """One campaign run as a CampaignRecord (also used on the run being finished). Checkpoints
    whose weights retention deleted are left out: what the record lists can be loaded."""
    run_id = run.info.run_id
    tags = run.data.tags
    pruned = pruned_steps(tags)
    curve = store.metric_history(run_id, K.PASS_AT_1)
    successes = store.metric_history(run_id, K.EVAL_SUCCESSES)
    trials = store.metric_history(run_id, K.EVAL_TRIALS)
    steps = sorted(curve)
    return CampaignRecord(
        index=int(tags[K.CAMPAIGN]), run_id=run_id, start_model=tags[K.START_MODEL],
        pass_at_1=[curve[s] for s in steps],
        successes=[int(successes[s]) for s in steps], trials=[int(trials[s]) for s in steps],
        checkpoints={s: m for s, m in store.checkpoints(run_id).items() if s not in pruned},
        lr_multiplier=float(run.data.params.get(K.LR_MULTIPLIER_PARAM, 1.0)),
        tags=dict(tags), metrics=dict(run.data.metrics))


def campaign_records(store, chain_id: str) -> list[CampaignRecord]:
    """Every FINISHED campaign of the chain, in order, as the controllers see them."""
    records = {int(r.data.tags[K.CAMPAIGN]): read_campaign(store, r)
               for r in store.campaign_runs(chain_id, finished=True)}
    return [records[i] for i in sorted(records)]


def split_tasks(config: ChainConfig):
    """(rl, eval): the synthetic splits, or a user source split once, by a fixed shuffle:
    eval is its first ``eval_tasks``, RL the next ``rl_tasks``; the rest is never used by the
    chain, and is what `held_out_tasks` gives promote."""
    from selfregress.tasks import synthetic_splits

    if config.tasks == "synthetic":
        splits = synthetic_splits(seed=0)
        return splits.rl[:config.rl_tasks], splits.eval[:config.eval_tasks]
    shuffled = _shuffled(config.tasks)
    if len(shuffled) <= config.eval_tasks:
        raise UserError(f"task source {config.tasks} has {len(shuffled)} tasks: need more than "
                        f"eval_tasks={config.eval_tasks} so that some are left for RL")
    return shuffled[config.eval_tasks:][:config.rl_tasks], shuffled[:config.eval_tasks]


RL_DRAW = 5   # step_seed's purpose of a campaign's draw (campaign.TRAIN 0 ... campaign.ADAPTER 4)


def campaign_rl_tasks(config: ChainConfig, rl_tasks: list, index: int) -> list:
    """The RL tasks campaign ``index`` trains on: the whole set, or (``campaign_tasks`` N > 0) N of
    them drawn without replacement from (seed, campaign), in the set's order. The draw does not
    depend on the condition, so every condition's campaign c trains on the same tasks."""
    if not config.campaign_tasks:
        return list(rl_tasks)
    if config.campaign_tasks > len(rl_tasks):         # the source holds fewer than rl_tasks
        raise UserError(f"campaign_tasks={config.campaign_tasks} but the task source {config.tasks} leaves only "
                        f"{len(rl_tasks)} RL tasks: lower campaign_tasks")
    parts = [config.seed, index, 0, RL_DRAW]          # as step.step_seed (torch-free here)
    rng = np.random.default_rng(np.random.SeedSequence(parts).generate_state(1)[0])
    return [rl_tasks[i] for i in sorted(rng.choice(len(rl_tasks), size=config.campaign_tasks, replace=False))]


def chain_splits(config: ChainConfig) -> dict[str, list]:
    """context -> tasks of a chain's splits (datasets.CONTEXTS): rl, selection, report."""
    rl_tasks, selection = split_tasks(config)
    return {"rl": rl_tasks, "selection": selection, "report": report_split(config)}


def split_digests(config: ChainConfig) -> dict[str, str]:
    """context -> content digest of each split (datasets.py): part of the chain's config hash, so
    that a changed task file, or a changed task generator, is a different configuration."""
    return dict(_split_digests(config.tasks, config.rl_tasks, config.eval_tasks, config.report_tasks))


@functools.lru_cache(maxsize=64)
def _split_digests(tasks: str, rl_tasks: int, eval_tasks: int, report_tasks: int) -> tuple:
    # The splits depend on these four settings only (split_tasks, report_split): a sweep's jobs
    # share one computation.
    config = ChainConfig(tasks=tasks, rl_tasks=rl_tasks, eval_tasks=eval_tasks, report_tasks=report_tasks)
    return tuple(datasets.split_digests(chain_splits(config)).items())


def report_split(config: ChainConfig) -> list:
    """The report split: ``report_tasks`` tasks disjoint from the chain's RL and eval (selection)
    tasks and from promote's test split. Only the report evaluations (``report_eval``) grade it;
    no controller, Optuna objective or SFT stop reads it.

    Synthetic: the eval split's tasks after the first ``eval_tasks`` (the split is a prefix-stable
    stream, so the selection tasks do not move). A user source: its shuffled tasks after the
    ``eval_tasks + rl_tasks`` the chain uses."""
    if config.tasks == "synthetic":
        return list(_synthetic_eval(config.eval_tasks + config.report_tasks)[config.eval_tasks:])
    used = config.eval_tasks + config.rl_tasks
    shuffled = _shuffled(config.tasks)
    if len(shuffled) < used + config.report_tasks:
        raise UserError(f"task source {config.tasks} has {len(shuffled)} tasks, and the chain uses {used} "
                        f"(eval_tasks + rl_tasks): too few for report_tasks={config.report_tasks}; lower one of them")
    return shuffled[used:used + config.report_tasks]


@functools.cache
def _synthetic_eval(n: int) -> tuple:
    from selfregress.tasks import synthetic_splits

    return tuple(synthetic_splits(seed=0, n_pretrain=0, n_rl=0, n_eval=n, n_test=0).eval)


def held_out_tasks(configs: list[ChainConfig], n: int) -> tuple[list, str]:
    """Up to ``n`` tasks that none of these chains trained or evaluated on, and where they come
    from: the synthetic test split, or what a user source's split left over."""
    from selfregress.tasks import synthetic_splits

    sources = sorted({c.tasks for c in configs})
    if len(sources) != 1:
        raise UserError(f"the chains use different task sources ({', '.join(sources)}), so no "
                        "test split is held out from all of them: select one source's chains (--filter)")
    if sources[0] == "synthetic":
        return synthetic_splits(seed=0).test[:n], f"synthetic test[:{n}]"
    used = max(c.eval_tasks + c.rl_tasks + c.report_tasks for c in configs)
    shuffled = _shuffled(sources[0])
    if len(shuffled) <= used:
        raise UserError(f"task source {sources[0]} has {len(shuffled)} tasks, and the chains use the first "
                        f"{used} (eval_tasks + rl_tasks + report_tasks), so none is held out for a test: run the "
                        "chains with a smaller rl_tasks, eval_tasks or report_tasks")
    return shuffled[used:used + n], f"{sources[0]} shuffled[{used}:{min(used + n, len(shuffled))}]"


def _shuffled(source: str) -> list:
    """A user task source in the fixed order every chain splits it by."""
    from selfregress.tasks import resolve_tasks

    tasks = resolve_tasks(source, "eval")
    return [tasks[i] for i in np.random.default_rng(0).permutation(len(tasks))]


def chain_curve(records: list[CampaignRecord]) -> dict[int, float]:
    """pass_at_1 at the global step. Campaign c occupies steps offset_c .. offset_c + budget_c,
    with offset_c = sum of (budget + 1) over earlier campaigns: each restart is its own point."""
    points, offset = {}, 0
    for record in records:
        for step, value in enumerate(record.pass_at_1):
            points[offset + step] = value
        offset += len(record.pass_at_1)
    return points


def chain_summary(records: list[CampaignRecord]) -> dict[str, float]:
    """The chain run's summary metrics: the end, the peak, and the mean within-campaign peak-to-end
    gap, all on the selection split; and the end on the report split, once the last campaign has it."""
    gaps = [max(r.pass_at_1) - r.pass_at_1[-1] for r in records]
    summary = {K.CHAIN_END: records[-1].pass_at_1[-1],
               K.CHAIN_PEAK: max(max(r.pass_at_1) for r in records),
               K.CHAIN_GAP: float(np.mean(gaps))}
    if K.REPORT_PASS_AT_1["end"] in records[-1].metrics:
        summary[K.CHAIN_REPORT_END] = records[-1].metrics[K.REPORT_PASS_AT_1["end"]]
    return summary
