"""A chain: ``campaigns`` campaigns in sequence, each started where the condition's controller says.

Reads: the start model (default ``selfregress-base@base``), the synthetic RL and eval sets.
Writes: a chain run (``pass_at_1`` at the global step, ``chain/*`` summaries, every resolved
parameter) and one nested campaign run per campaign (per-step metrics, checkpoints as
LoggedModels, the controller's decision). MLflow is the only state: between campaigns the next
start, budget and learning rate are read back from the store, so a killed chain resumes from
what MLflow holds, and replays bit for bit (every random draw is seeded by (seed, campaign, step)).
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfregress import metric_keys as K
from selfregress.campaign import (StepTimes, evaluate_step, frozen_copy, make_update, step_seed,
                                  train_step)
from selfregress.config import as_params, option, parse, require_at_least_one
from selfregress.controllers import CONTROLLERS, CampaignRecord, Decision
from selfregress.distributed import SINGLE, Dist
from selfregress.errors import UserError
from selfregress.policy import build_prompt, load_policy, sample
from selfregress.tracking import same_param

# condition -> (update, controller). A condition is nothing more than this pair.
CONDITIONS: dict[str, tuple[str, str]] = {
    "naive": ("reinforce", "last"),
    "kl": ("kl", "last"),
    "ewc": ("ewc", "last"),
    "grpo": ("grpo", "last"),
    "es": ("reinforce", "es"),
    "care": ("reinforce", "care"),
    "grpo_es": ("grpo", "es"),
}


@dataclass(frozen=True)
class ChainConfig:
    """One chain of the protocol. Every field is an MLproject parameter of `main`."""
    condition: str = option("naive", "update + controller", tuple(CONDITIONS))
    seed: int = option(0, "chain seed: prompts, sampling and evaluation draws")
    model: str = option("base", "start model: 'base' (registry), a folder, a hub id or a models:/ URI")
    tasks: str = option("synthetic", "RL/eval task source: 'synthetic' (its rl and eval splits)")
    rl_tasks: int = option(256, "size of the fixed RL task set (the first N of the source's RL split)")
    campaigns: int = option(10, "campaigns in the chain")
    steps: int = option(20, "policy-gradient steps per campaign (the budget)")
    batch_size: int = option(16, "prompts per step")
    group_size: int = option(4, "samples per prompt (every condition draws the same number)")
    lr: float = option(7e-4, "AdamW learning rate at the start of every campaign (the collapse regime)")
    temperature: float = option(1.0, "sampling temperature (training and evaluation)")
    top_p: float = option(1.0, "nucleus sampling threshold")
    max_new_tokens: int = option(96, "token limit of a sampled program")
    eval_tasks: int = option(128, "held-out tasks evaluated after every step")
    eval_samples: int = option(2, "samples per held-out task")
    baseline: str = option("none", "REINFORCE baseline (naive is the paper's A0: none)", ("none", "mean", "ema"))
    kl_beta: float = option(0.05, "beta of the KL(pi || pi_start) term (condition kl)")
    ewc_lambda: float = option(100.0, "lambda of the EWC term (condition ewc)")
    fisher_samples: int = option(32, "sampled completions used to estimate the EWC Fisher")
    checkpoints: str = option("all", "which steps log a checkpoint", ("all", "peaks", "none"))
    es_slack: int = option(3, "ES: next budget = min(steps, max(1, peak_step + es_slack))")
    es_min_delta: float = option(0.0, "ES: a new peak must beat the old by more than this")
    es_patience: int = option(0, "ES: stop after this many steps without a new peak (0 = never)")
    care_gate: float = option(0.5, "CARE: transfer iff P(p_candidate > p_incumbent) >= care_gate")
    care_regress: float = option(0.8, "CARE: regression iff P(p_end < p_start) >= care_regress")
    care_lr_decay: float = option(0.5, "CARE: lr multiplier after a regression")
    care_forget: float = option(0.5, "CARE: scale of the incumbent posterior toward the prior after a regression")
    resume: str = option("false", "'true' resumes the latest unfinished chain of this condition and seed, or a chain_id")
    workers: int = option(2, "grader processes")

    def validate(self) -> None:
        require_at_least_one(self, ("rl_tasks", "campaigns", "steps", "batch_size", "group_size", "max_new_tokens",
                                    "eval_tasks", "eval_samples", "workers", "fisher_samples"))
        if self.seed < 0:
            raise UserError(f"'seed' must be >= 0, got {self.seed}")
        if self.lr <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise UserError("'lr' and 'temperature' must be > 0, and 'top_p' in (0, 1]")
        if CONDITIONS[self.condition][0] == "grpo" and self.group_size < 2:
            raise UserError(f"condition {self.condition} needs group_size >= 2 (GRPO normalises "
                            f"within a group), got {self.group_size}")
        if self.kl_beta < 0 or self.ewc_lambda < 0:
            raise UserError("'kl_beta' and 'ewc_lambda' must be >= 0")
        if self.es_slack < 0 or self.es_patience < 0 or self.es_min_delta < 0:
            raise UserError("'es_slack', 'es_patience' and 'es_min_delta' must be >= 0")
        for name in ("care_gate", "care_regress", "care_lr_decay", "care_forget"):
            if not 0 < getattr(self, name) < 1 and not (name == "care_lr_decay" and getattr(self, name) == 1):
                raise UserError(f"'{name}' must be in (0, 1), got {getattr(self, name)}")

    @property
    def update(self) -> str:
        return CONDITIONS[self.condition][0]

    @property
    def controller(self) -> str:
        return CONDITIONS[self.condition][1]


# Modules that never change a chain's numbers: entry points, display, and the readers.
_NOT_IN_CODE_VERSION = {"__main__.py", "cli.py", "progress.py", "sweep.py", "report.py", "promote.py",
                        "tune.py"}
# Settings that never change a chain's numbers.
_NOT_IN_CONFIG_HASH = ("resume", "workers")


@functools.cache
def code_version() -> str:
    """A hash of the source that decides a chain's numbers (the selfregress and grader packages,
    without the entry points and readers): a sweep reuses a finished chain only if it matches."""
    import grader

    digest = hashlib.sha256()
    for root in (Path(__file__).parent, Path(grader.__file__).parent):
        for path in sorted(root.rglob("*.py")):
            if path.name not in _NOT_IN_CODE_VERSION:
                digest.update(f"{root.name}/{path.relative_to(root)}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def config_hash(config: ChainConfig, *, without: tuple[str, ...] = ()) -> str:
    """A hash of the resolved settings that decide a chain's numbers (``without``: more to leave out)."""
    values = {k: v for k, v in as_params(config).items() if k not in _NOT_IN_CONFIG_HASH + without}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def chain_tags(config: ChainConfig, chain_id: str, model: str, sweep_id: str = "") -> dict[str, str]:
    tags = {"condition": config.condition, "seed": str(config.seed), "chain_id": chain_id, "model": model,
            "selfregress.config_hash": config_hash(config), "selfregress.code_version": code_version()}
    if sweep_id:
        tags["sweep_id"] = sweep_id
    return tags


def find_chain_to_resume(store, config: ChainConfig):
    """The chain run to continue: by chain_id, or the newest unfinished one with this condition and seed."""
    if config.resume.lower() == "true":
        runs = store.find_runs(f"tags.`selfregress.kind` = 'chain' and tags.condition = '{config.condition}' "
                               f"and tags.seed = '{config.seed}' and attributes.status != 'FINISHED'")
        what = f"condition={config.condition} seed={config.seed}"
    else:
        runs = store.find_runs(f"tags.`selfregress.kind` = 'chain' and tags.chain_id = '{config.resume}'")
        what = f"chain_id={config.resume}"
    if not runs:
        raise UserError(f"resume: no chain to resume for {what} in this experiment; "
                        "run without -P resume to start a new chain")
    run = runs[0]
    logged = run.data.params
    ours = {k: v for k, v in as_params(config).items() if k not in ("resume", "workers")}
    changed = sorted(k for k in ours if k in logged and not same_param(logged[k], ours[k]))
    if changed:
        raise UserError(f"resume: the chain {run.data.tags['chain_id']} was started with other "
                        f"parameters ({', '.join(f'{k}={logged[k]}' for k in changed)}); pass the same ones")
    return run


def read_campaign(store, run) -> CampaignRecord:
    """One campaign run as a CampaignRecord (also used on the run being finished)."""
    run_id = run.info.run_id
    curve = store.metric_history(run_id, K.PASS_AT_1)
    successes = store.metric_history(run_id, K.EVAL_SUCCESSES)
    trials = store.metric_history(run_id, K.EVAL_TRIALS)
    steps = sorted(curve)
    return CampaignRecord(
        index=int(run.data.tags["campaign"]), run_id=run_id,
        start_model=run.data.tags["controller/start_model"],
        pass_at_1=[curve[s] for s in steps],
        successes=[int(successes[s]) for s in steps], trials=[int(trials[s]) for s in steps],
        checkpoints=store.checkpoints(run_id),
        lr_multiplier=float(run.data.params.get("lr_multiplier", 1.0)),
        tags=dict(run.data.tags), metrics=dict(run.data.metrics))


def campaign_records(store, chain_id: str) -> list[CampaignRecord]:
    """Every FINISHED campaign of the chain, in order, as the controllers see them."""
    runs = store.find_runs(f"tags.`selfregress.kind` = 'campaign' and tags.chain_id = '{chain_id}' "
                           "and attributes.status = 'FINISHED'")
    records = {int(r.data.tags["campaign"]): read_campaign(store, r) for r in runs}
    return [records[i] for i in sorted(records)]


# ---- running a chain ------------------------------------------------------------------------
TRAIN, EVAL, FISHER = 0, 1, 2   # purposes, so that every random draw has its own seed


@dataclass(frozen=True)
class Plan:
    start_model: str
    budget: int
    lr_multiplier: float


def next_plan(records: list[CampaignRecord], config: ChainConfig, base_model: str) -> Plan:
    """The first campaign starts from the base; later ones where the last logged decision says."""
    if not records:
        return Plan(base_model, config.steps, 1.0)
    last = read_decision(records[-1])
    return Plan(last.next_start_model, last.next_budget, last.lr_multiplier)


def read_decision(record: CampaignRecord) -> Decision:
    tags, metrics = record.tags, record.metrics
    peak = metrics.get("controller/peak_step")
    return Decision(tags["controller/decision"], tags["controller/next_start_model"],
                    int(metrics["controller/next_budget"]), metrics["controller/lr_multiplier"],
                    peak_step=None if peak is None else int(peak),
                    p_transfer=metrics.get("controller/p_transfer"), p_regress=metrics.get("controller/p_regress"))


def logged_config(params: dict[str, str]) -> ChainConfig:
    """A chain run's ChainConfig, from its logged params (other params, e.g. a sweep's, ignored)."""
    return parse(ChainConfig, {k: v for k, v in params.items() if k in ChainConfig.__dataclass_fields__})


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
    used = max(c.eval_tasks + c.rl_tasks for c in configs)
    shuffled = _shuffled(sources[0])
    if len(shuffled) <= used:
        raise UserError(f"task source {sources[0]} has {len(shuffled)} tasks, and the chains use the first "
                        f"{used} (eval_tasks + rl_tasks), so none is held out for a test: run the chains "
                        "with a smaller rl_tasks or eval_tasks")
    return shuffled[used:used + n], f"{sources[0]} shuffled[{used}:{min(used + n, len(shuffled))}]"


def _shuffled(source: str) -> list:
    """A user task source in the fixed order every chain splits it by."""
    from selfregress.tasks import resolve_tasks

    tasks = resolve_tasks(source, "eval")
    return [tasks[i] for i in np.random.default_rng(0).permutation(len(tasks))]


def wants_checkpoint(config: ChainConfig, curve: list[float]) -> bool:
    """all: every step. peaks (and none, under ES): a new campaign peak. The last step is always kept."""
    if config.checkpoints == "all":
        return True
    if config.checkpoints == "none" and config.controller != "es":
        return False
    from selfregress.controllers import peak_step
    return peak_step(curve, config.es_min_delta) == len(curve) - 1


def run_campaign(config: ChainConfig, store, grader, chain_run, chain_id: str, index: int,
                 plan: Plan, records: list[CampaignRecord], rl_tasks, eval_tasks, progress,
                 dist: Dist = SINGLE) -> CampaignRecord:
    """One campaign on the main process: its run, its steps, its checkpoints, its decision."""
    policy = load_policy(plan.start_model)
    start_id = store.model_id(plan.start_model)
    tags = {"campaign": index, "chain_id": chain_id, "condition": config.condition,
            "seed": config.seed, "controller/start_model": plan.start_model,
            "controller/start_model_id": start_id or ""}
    params = {"budget": plan.budget, "lr": config.lr * plan.lr_multiplier, "lr_multiplier": plan.lr_multiplier}
    with store.run(f"{config.condition}-s{config.seed}-c{index}", "campaign", parent=chain_run,
                   tags=tags, params=params) as run:
        times = train_campaign(config, policy, grader, index, plan, rl_tasks, eval_tasks, dist,
                               CampaignLog(config, run, store, policy, index, start_id, progress, plan.budget))

        # The decision is computed from what MLflow now holds, and logged on this run.
        record = read_campaign(store, store.get_run(run.run_id))
        decision = CONTROLLERS[config.controller](records + [record], config)
        run.set_tags(decision.tags())
        run.log_metrics({**decision.metrics(), **{f"time/{k}": v for k, v in vars(times).items()}},
                        step=record.last_step)
        progress.campaign_done(index, record.pass_at_1, decision.decision)
    return read_campaign(store, store.get_run(run.run_id))


class CampaignLog:
    """What the main process writes while a campaign runs: metrics, checkpoints, progress."""

    def __init__(self, config: ChainConfig, run, store, policy, index: int, start_id: str | None,
                 progress, budget: int):
        self.config, self.run, self.store, self.policy = config, run, store, policy
        self.index, self.start_id, self.progress, self.budget = index, start_id, progress, budget
        self.saved_step = 0

    def start(self, metrics: dict[str, float]) -> None:
        """Step 0: the start checkpoint, linked (or logged once if it is a folder or hub id)."""
        model_id = self.start_id
        if model_id is None:  # a folder or hub id: log it once so that every start is traceable
            model_id = save_checkpoint(self.run, self.policy, self.index, 0)
        else:
            self.store.link_checkpoint(self.run.run_id, model_id, 0)
        self.run.log_metrics(metrics, step=0, model_id=model_id)
        self.progress.step(self.index, 0, self.budget, metrics[K.PASS_AT_1], None)

    def step(self, step: int, train: dict[str, float], metrics: dict[str, float], curve: list[float],
             last: bool, times: StepTimes) -> None:
        t0 = time.perf_counter()
        model_id = None
        if wants_checkpoint(self.config, curve) or last:
            model_id, self.saved_step = save_checkpoint(self.run, self.policy, self.index, step), step
        self.run.log_metrics({**train, **metrics}, step=step, model_id=model_id)
        times.tracking += time.perf_counter() - t0
        self.progress.step(self.index, step, self.budget, curve[-1], train[K.TRAIN_REWARD_MEAN])


def train_campaign(config: ChainConfig, policy, grader, index: int, plan: Plan, rl_tasks, eval_tasks,
                   dist: Dist, log: CampaignLog | None) -> StepTimes:
    """The step loop, the same on every process; ``log`` is None except on the main process."""
    from selfregress.controllers import es_should_stop

    times = StepTimes()
    ref_model = frozen_copy(policy.model)
    fisher_batch = None
    if config.update == "ewc":
        rng = np.random.default_rng(step_seed(config.seed, index, 0, FISHER))
        chosen = rng.choice(len(rl_tasks), size=min(config.fisher_samples, len(rl_tasks)), replace=False)
        prompts = [build_prompt(policy.tokenizer, rl_tasks[i].prompt, rl_tasks[i].starter_code) for i in chosen]
        fisher_batch = sample(policy, prompts, n=1, temperature=config.temperature, top_p=config.top_p,
                              max_new_tokens=config.max_new_tokens, seed=step_seed(config.seed, index, 0, FISHER))
    update = make_update(config.update, kl_beta=config.kl_beta, ewc_lambda=config.ewc_lambda,
                         baseline=config.baseline, policy=policy, fisher_samples=fisher_batch)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.lr * plan.lr_multiplier)
    evaluation = dict(samples=config.eval_samples, temperature=config.temperature,
                      top_p=config.top_p, max_new_tokens=config.max_new_tokens, times=times, dist=dist)

    # Step 0: re-evaluate the start checkpoint (CARE's evidence; ES's first candidate peak).
    metrics = evaluate_step(policy, eval_tasks, grader, seed=step_seed(config.seed, index, 0, EVAL), **evaluation)
    curve = [metrics[K.PASS_AT_1]]
    if log:
        log.start(metrics)

    for step in range(1, plan.budget + 1):
        rng = np.random.default_rng(step_seed(config.seed, index, step, TRAIN))
        batch = [rl_tasks[i] for i in rng.choice(len(rl_tasks), size=config.batch_size,
                                                 replace=config.batch_size > len(rl_tasks))]
        train = train_step(policy, ref_model, optimizer, update, dist.shard(batch), grader,
                           group_size=config.group_size, temperature=config.temperature,
                           top_p=config.top_p, max_new_tokens=config.max_new_tokens,
                           seed=step_seed(config.seed, index, step, TRAIN) + dist.rank, times=times, dist=dist)
        metrics = evaluate_step(policy, eval_tasks, grader,
                                seed=step_seed(config.seed, index, step, EVAL), **evaluation)
        curve.append(metrics[K.PASS_AT_1])
        stop = es_should_stop(curve, config.es_patience, config.es_min_delta) if config.controller == "es" else False
        if log:
            log.step(step, train, metrics, curve, last=step == plan.budget or stop, times=times)
        if stop:
            break
    # The last step is always a checkpoint: the next start may need it.
    assert log is None or log.saved_step == len(curve) - 1
    return times


def save_checkpoint(run, policy, index: int, step: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        policy.save(folder)
        return run.log_checkpoint(folder, name=f"c{index}-s{step}", step=step,
                                  tags={"campaign": index, "step": step})


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
    gaps = [max(r.pass_at_1) - r.pass_at_1[-1] for r in records]
    return {K.CHAIN_END: records[-1].pass_at_1[-1],
            K.CHAIN_PEAK: max(max(r.pass_at_1) for r in records),
            K.CHAIN_GAP: float(np.mean(gaps))}


def sync_chain_curve(store, chain_run, records: list[CampaignRecord]) -> None:
    """Log the chain-level points that MLflow does not hold yet (never a point twice)."""
    have = store.metric_history(chain_run.run_id, K.PASS_AT_1)
    missing = {step: v for step, v in chain_curve(records).items() if step not in have}
    if missing:
        chain_run.log_series(K.PASS_AT_1, missing)


def supersede_unfinished(store, chain_id: str) -> None:
    """Campaign runs that a kill left RUNNING (or FAILED/KILLED) are closed and marked: they are
    not part of the chain, and the campaign restarts from its start checkpoint."""
    for run in store.find_runs(f"tags.`selfregress.kind` = 'campaign' and tags.chain_id = '{chain_id}' "
                               "and attributes.status != 'FINISHED'"):
        store.client.set_tag(run.info.run_id, "selfregress.superseded", "true")
        if run.info.status == "RUNNING":
            store.close(run.info.run_id, "KILLED")


def run_chain(config: ChainConfig, store, grader, base_model: str, log=print,
              attach_run_id: str | None = None, parent=None, sweep_id: str = "",
              dist: Dist = SINGLE) -> str:
    """Run (or resume) one chain to the end. Returns its chain_id.

    Under ``accelerate launch`` only the main process (``store`` is None elsewhere) reads and
    writes MLflow; it sends every other process each campaign's plan, and they train along.
    """
    from selfregress.progress import Progress

    rl_tasks, eval_tasks = split_tasks(config)
    if config.batch_size % dist.world:
        raise UserError(f"batch_size={config.batch_size} must be a multiple of the {dist.world} "
                        "training processes, so that every process gets the same number of prompts")
    if not dist.is_main:
        return follow_chain(config, grader, rl_tasks, eval_tasks, dist)
    if config.resume.lower() != "false":
        previous = find_chain_to_resume(store, config)
        chain_id = previous.data.tags["chain_id"]
        if attach_run_id and attach_run_id != previous.info.run_id:
            # `mlflow run` made a fresh run for this invocation: it records the resume and ends.
            with store.run("resume", "resume", attach_run_id=attach_run_id,
                           tags={"chain_id": chain_id, "selfregress.resumes": previous.info.run_id}):
                pass
        context = store.run("", "chain", attach_run_id=previous.info.run_id)
        log(f"resuming chain {chain_id} ({config.condition}, seed {config.seed})")
    else:
        chain_id = uuid.uuid4().hex[:12]
        context = store.run(f"{config.condition}-s{config.seed}", "chain",
                            tags={**chain_tags(config, chain_id, base_model if config.model == "base" else config.model,
                                               sweep_id), "selfregress.processes": str(dist.world)},
                            params=as_params(config), attach_run_id=attach_run_id, parent=parent)
    with context as chain_run:
        supersede_unfinished(store, chain_id)
        records = campaign_records(store, chain_id)
        sync_chain_curve(store, chain_run, records)
        progress = Progress(config.campaigns)
        while len(records) < config.campaigns:
            plan = next_plan(records, config, base_model)
            dist.broadcast(("campaign", len(records), plan))
            records.append(run_campaign(config, store, grader, chain_run, chain_id, len(records), plan,
                                        records, rl_tasks, eval_tasks, progress, dist))
            sync_chain_curve(store, chain_run, records)
        dist.broadcast(("done", chain_id, None))
        chain_run.log_metrics(chain_summary(records), step=sum(len(r.pass_at_1) for r in records) - 1)
    return chain_id


def follow_chain(config: ChainConfig, grader, rl_tasks, eval_tasks, dist: Dist) -> str:
    """A non-main process: train each campaign the main process announces; log nothing."""
    while True:
        kind, index, plan = dist.broadcast()
        if kind == "done":
            return index   # the chain_id
        train_campaign(config, load_policy(plan.start_model), grader, index, plan, rl_tasks, eval_tasks,
                       dist, log=None)
