"""A chain: ``campaigns`` campaigns in sequence, each started where the condition's controller says.

Reads: the start model (default ``selfregress-base@base``, pinned when the chain starts to its
LoggedModel id and weights' sha256: ``base_identity.py``), the RL and eval task splits.
Writes: a chain run (``pass_at_1`` at the global step, ``chain/*`` summaries, every resolved
parameter) and one nested campaign run per campaign (``campaign.run_campaign``). MLflow is the
only state: between campaigns the next start, budget and learning rate are read back from the
store (the last campaign's logged ``Decision``), so a killed chain resumes from what MLflow
holds, and replays bit for bit.
"""

from __future__ import annotations

import uuid

from selfregress import base_identity
from selfregress import datasets
from selfregress import metric_keys as K
from selfregress.bootstrap import start_model
from selfregress.campaign import Plan, campaign_policy, run_campaign, train_campaign
from selfregress.chain_config import NOT_IN_CONFIG_HASH, ChainConfig, chain_tags
from selfregress.config import as_params, same_param
from selfregress.controllers import CampaignRecord, Decision
from selfregress.distributed import SINGLE, Dist
from selfregress.errors import UserError
from selfregress.policy import resolve_device
from selfregress.progress import Progress
from selfregress.records import campaign_records, chain_curve, chain_splits, chain_summary, split_tasks
from selfregress.report_eval import ReportEvaluator
from selfregress.retention import retain, storage_totals
from selfregress.run_notes import campaign_steps, chain_note  # tune: run descriptions


def next_plan(records: list[CampaignRecord], config: ChainConfig, base_model: str) -> Plan:
    """The first campaign starts from the base; later ones where the last logged decision says."""
    if not records:
        return Plan(base_model, config.steps, 1.0)
    last = Decision.from_record(records[-1])
    return Plan(last.next_start_model, last.next_budget, last.lr_multiplier)


def find_chain_to_resume(store, config: ChainConfig):
    """The chain run to continue: by chain_id, or the newest unfinished one with this condition and seed."""
    if config.resume.lower() == "true":
        runs = store.unfinished_chains(config.condition, config.seed)
        what = f"condition={config.condition} seed={config.seed}"
    else:
        runs = store.chain_run(config.resume)
        what = f"chain_id={config.resume}"
    if not runs:
        raise UserError(f"resume: no chain to resume for {what} in this experiment; "
                        "run without -P resume to start a new chain")
    run = runs[0]
    logged = run.data.params
    ours = {k: v for k, v in as_params(config).items() if k not in NOT_IN_CONFIG_HASH}
    changed = sorted(k for k in ours if k in logged and not same_param(logged[k], ours[k]))
    if changed:
        raise UserError(f"resume: the chain {run.data.tags[K.CHAIN_ID]} was started with other "
                        f"parameters ({', '.join(f'{k}={logged[k]}' for k in changed)}); pass the same ones")
    return run


def sync_chain_curve(store, chain_run, records: list[CampaignRecord]) -> None:
    """Log the chain-level points that MLflow does not hold yet (never a point twice)."""
    have = store.metric_history(chain_run.run_id, K.PASS_AT_1)
    missing = {step: v for step, v in chain_curve(records).items() if step not in have}
    if missing:
        chain_run.log_series(K.PASS_AT_1, missing)
        chain_run.log_series(K.CHAIN_CAMPAIGN, {s: v for s, v in campaign_steps(records).items() if s in missing})  # tune: boundaries


def supersede_unfinished(store, chain_id: str) -> None:
    """Campaign runs that a kill left RUNNING (or FAILED/KILLED) are closed and marked: they are
    not part of the chain, and the campaign restarts from its start checkpoint."""
    for run in store.campaign_runs(chain_id, finished=False):
        store.client.set_tag(run.info.run_id, K.SUPERSEDED, "true")
        if run.info.status == "RUNNING":
            store.close(run.info.run_id, "KILLED")


def run_chain(config: ChainConfig, store, grader, base_model: str, log=print,
              attach_run_id: str | None = None, parent=None, sweep_id: str = "",
              dist: Dist = SINGLE) -> str:
    """Run (or resume) one chain to the end. Returns its chain_id.

    Under ``accelerate launch`` only the main process (``store`` is None elsewhere) reads and
    writes MLflow; it sends every other process each campaign's plan, and they train along.
    """
    rl_tasks, eval_tasks = split_tasks(config)
    resolve_device(config.policy_options()["device"])   # device=cuda without CUDA: one line, before any run
    if config.batch_size % dist.world:
        raise UserError(f"batch_size={config.batch_size} must be a multiple of the {dist.world} "
                        "training processes, so that every process gets the same number of prompts")
    if not dist.is_main:
        return follow_chain(config, grader, rl_tasks, eval_tasks, dist)
    if config.resume.lower() != "false":
        previous = find_chain_to_resume(store, config)
        chain_id = previous.data.tags[K.CHAIN_ID]
        pinned = base_identity.logged(previous)
        if pinned:   # the base the chain started from, not wherever an alias points now
            base_identity.verify(pinned, chain_id)
            base_model = pinned.uri
        if attach_run_id and attach_run_id != previous.info.run_id:
            # `mlflow run` made a fresh run for this invocation: it records the resume and ends.
            with store.run("resume", "resume", attach_run_id=attach_run_id,
                           tags={K.CHAIN_ID: chain_id, K.RESUMES: previous.info.run_id}):
                pass
        context = store.run("", "chain", attach_run_id=previous.info.run_id)
        log(f"resuming chain {chain_id} ({config.condition}, seed {config.seed})")
    else:
        chain_id = uuid.uuid4().hex[:12]
        # the chain's own start model, resolved as `main` resolves it (a shipped name, an alias)
        start = base_model if config.model == "base" else start_model(store, config.model, log)
        pinned = base_identity.pin(store, start)
        base_model = pinned.uri
        splits = chain_splits(config)
        context = store.run(f"{config.condition}-s{config.seed}", "chain",
                            tags={**chain_tags(config, chain_id, pinned.uri, sweep_id, pinned.digest,
                                               datasets.split_digests(splits)),
                                  **pinned.tags(), K.PROCESSES: str(dist.world),
                                  K.NOTE: chain_note(config, chain_id, pinned.uri)},  # tune: description
                            params=as_params(config), attach_run_id=attach_run_id, parent=parent)
    with context as chain_run:
        if config.resume.lower() == "false":   # the splits as MLflow datasets (UI: Datasets column)
            datasets.log_splits(splits, run_id=chain_run.run_id, source=config.tasks, client=store.client)
        supersede_unfinished(store, chain_id)
        records = campaign_records(store, chain_id)
        # Report-split figures, then retention: a resumed chain fills in only what a kill left undone.
        report = ReportEvaluator(config, store, grader)
        for record in records:
            report.remember(record)
        records = [retain(config, store, report.campaign(r)) for r in records]
        sync_chain_curve(store, chain_run, records)
        progress = Progress(config.campaigns)
        while len(records) < config.campaigns:
            plan = next_plan(records, config, base_model)
            dist.broadcast(("campaign", len(records), plan))
            record = run_campaign(config, store, grader, chain_run, chain_id, len(records), plan,
                                  records, rl_tasks, eval_tasks, progress, dist, report)
            records.append(retain(config, store, record))   # once its report figures are logged
            sync_chain_curve(store, chain_run, records)
        dist.broadcast(("done", chain_id, None))
        summary = chain_summary(records)
        # tune: one value per run: a bar across runs, not a lone dot
        chain_run.log_metrics({**summary, **storage_totals(records)}, step=0)
        model = store.get_run(chain_run.run_id).data.tags.get(K.MODEL, config.model)   # tune: description,
        chain_run.set_tags({K.NOTE: chain_note(config, chain_id, model, summary)})     # with how it ended
    log(f"chain {chain_id} ({config.condition}, seed {config.seed}) done: end pass@1 {summary[K.CHAIN_END]:.3f}, "
        f"peak {summary[K.CHAIN_PEAK]:.3f}; run: {store.run_link(chain_run.run_id)}")
    return chain_id


def follow_chain(config: ChainConfig, grader, rl_tasks, eval_tasks, dist: Dist) -> str:
    """A non-main process: train each campaign the main process announces; log nothing."""
    while True:
        kind, index, plan = dist.broadcast()
        if kind == "done":
            return index   # the chain_id
        train_campaign(config, campaign_policy(config, plan.start_model, index), grader, index, plan, rl_tasks, eval_tasks,
                       dist, log=None)
