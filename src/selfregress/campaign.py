"""One campaign: ``budget`` steps from a start checkpoint, evaluated every step, then a decision.

``run_campaign`` is a campaign on the main process: its MLflow run, its steps, its checkpoints
and the controller's decision, computed from what MLflow then holds and logged on the run.
``train_campaign`` is the step loop, the same on every process (under ``accelerate launch`` the
others train along and log nothing). Every random draw is seeded by (seed, campaign, step,
purpose), so a resumed chain replays bit for bit.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from selfregress import lora
from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig
from selfregress.conditions import controller_for
from selfregress.controllers import ES, CampaignRecord
from selfregress.distributed import SINGLE, Dist
from selfregress.policy import Policy, build_prompt, load_policy
from selfregress.records import campaign_rl_tasks, read_campaign
from selfregress.retention import folder_bytes
from selfregress.sample_log import TRAIN_ARTIFACT, log_lines
from selfregress.run_notes import campaign_note  # tune: run descriptions
from selfregress.sampling import sample
from selfregress.step import StepTimes, evaluate_step, start_reference, step_seed, train_step
from selfregress.updates import make_update

TRAIN, EVAL, FISHER = 0, 1, 2   # purposes, so that every random draw has its own seed
ADAPTER = 4                     # fresh LoRA adapters' initial A (report_eval.REPORT is 3,
                                # records.RL_DRAW 5)


@dataclass(frozen=True)
class Plan:
    start_model: str
    budget: int
    lr_multiplier: float


def wants_checkpoint(config: ChainConfig, curve: list[float]) -> bool:
    """all: every step. peaks (and none, under ES): a new campaign peak. The last step is always kept."""
    if config.checkpoints == "all":
        return True
    if config.checkpoints == "none" and config.controller != "es":
        return False
    return ES(min_delta=config.es_min_delta).is_peak(curve)


def campaign_policy(config: ChainConfig, start_model: str, index: int = 0) -> Policy:
    """The start checkpoint, ready to train, on the chain's device and with its autocast dtype.

    Under LoRA (``lora_rank`` > 0) the policy is base + adapter: the start's own adapter when the
    start is a LoRA checkpoint (ES's peak, CARE's incumbent), else fresh adapters (B = 0: exactly
    the start model), whose base is the start (the chain's pinned base). Under full fine-tuning a
    LoRA checkpoint given as the start is merged into its base, and every weight trains. Fresh
    adapters' A is drawn from the seed (seed, campaign ``index``, 0, ADAPTER), not from torch's
    global generator, which whatever ran before in the process has moved.
    """
    policy = load_policy(start_model, **config.policy_options(), trainable=config.lora_rank > 0)
    if config.lora_rank == 0:
        if policy.adapter is not None:
            model = policy.adapter.merge_and_unload().requires_grad_(True)
            policy = replace(policy, model=model, adapter=None, base_ref="")
        return policy
    if policy.adapter is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(config.seed, index, 0, ADAPTER))
            adapted = lora.attach_lora(policy.model, config.lora_rank, config.lora_alpha)
        policy = replace(policy, model=lora.policy_model(adapted), adapter=adapted, base_ref=start_model)
    return policy


def run_campaign(config: ChainConfig, store, grader, chain_run, chain_id: str, index: int,
                 plan: Plan, records: list[CampaignRecord], rl_tasks, eval_tasks, progress,
                 dist: Dist = SINGLE, report=None) -> CampaignRecord:
    """One campaign on the main process: its run, its steps, its checkpoints, its decision; then,
    once the run is finished (the decision made), ``report`` (a ``report_eval.ReportEvaluator``)
    evaluates its start, peak and end on the report split, reusing the end policy in memory."""
    policy = campaign_policy(config, plan.start_model, index)
    start_id = store.model_id(plan.start_model)
    tags = {K.CAMPAIGN: index, K.CHAIN_ID: chain_id, K.CONDITION: config.condition,
            K.SEED: config.seed, K.START_MODEL: plan.start_model, K.START_MODEL_ID: start_id or ""}
    params = {K.BUDGET_PARAM: plan.budget, K.LR_PARAM: config.lr * plan.lr_multiplier,
              K.LR_MULTIPLIER_PARAM: plan.lr_multiplier}
    with store.run(f"{config.condition}-s{config.seed}-c{index}", "campaign", parent=chain_run,
                   tags=tags, params=params) as run:
        log = CampaignLog(config, run, store, policy, index, start_id, progress, plan.budget)
        times = train_campaign(config, policy, grader, index, plan, rl_tasks, eval_tasks, dist, log)
        log_lines(run, log.samples, TRAIN_ARTIFACT)      # every RL step's replies, programs, verdicts

        # The decision is computed from what MLflow now holds, and logged on this run.
        record = read_campaign(store, store.get_run(run.run_id))
        decision = controller_for(config).decide(records + [record], config.steps)
        decision.to_run(run, record.last_step, {**{f"{K.TIME_PREFIX}{k}": v for k, v in vars(times).items()},
                                                K.BYTES_WRITTEN: float(log.bytes_written)})
        run.set_tags({K.NOTE: campaign_note(config, read_campaign(store, store.get_run(run.run_id)),
                                            params[K.LR_PARAM], plan.budget)})  # tune: description
        progress.campaign_done(index, record.pass_at_1, decision.decision)
    record = read_campaign(store, store.get_run(run.run_id))
    return report.campaign(record, in_memory={record.last_step: policy}) if report else record


class CampaignLog:
    """What the main process writes while a campaign runs: metrics, checkpoints, progress."""

    def __init__(self, config: ChainConfig, run, store, policy, index: int, start_id: str | None,
                 progress, budget: int):
        self.config, self.run, self.store, self.policy = config, run, store, policy
        self.index, self.start_id, self.progress, self.budget = index, start_id, progress, budget
        self.saved_step, self.bytes_written = 0, 0
        self.samples: list[dict] = []      # sample_log lines of every step's RL batch

    def start(self, metrics: dict[str, float]) -> None:
        """Step 0: the start checkpoint, linked (or logged once if it is a folder or hub id)."""
        model_id = self.start_id
        if model_id is None:  # a folder or hub id: log it once so that every start is traceable
            model_id, size = save_checkpoint(self.run, self.policy, self.index, 0)
            metrics = {**metrics, K.CHECKPOINT_BYTES: size}
            self.bytes_written += size
        else:
            self.store.link_checkpoint(self.run.run_id, model_id, 0)
        self.run.log_metrics(metrics, step=0, model_id=model_id)
        self.progress.step(self.index, 0, self.budget, metrics[K.PASS_AT_1], None)

    def step(self, step: int, train: dict[str, float], metrics: dict[str, float], curve: list[float],
             last: bool, times: StepTimes, samples: list[dict] = ()) -> None:
        t0 = time.perf_counter()
        self.samples.extend({"step": step, **line} for line in samples)
        model_id, saved = None, {}
        if wants_checkpoint(self.config, curve) or last:
            (model_id, size), self.saved_step = save_checkpoint(self.run, self.policy, self.index, step), step
            saved, self.bytes_written = {K.CHECKPOINT_BYTES: size}, self.bytes_written + size
        self.run.log_metrics({**train, **metrics, **saved}, step=step, model_id=model_id)
        times.tracking += time.perf_counter() - t0
        self.progress.step(self.index, step, self.budget, curve[-1], train[K.TRAIN_REWARD_MEAN])


def train_campaign(config: ChainConfig, policy, grader, index: int, plan: Plan, rl_tasks, eval_tasks,
                   dist: Dist, log: CampaignLog | None) -> StepTimes:
    """The step loop, the same on every process; ``log`` is None except on the main process."""
    controller = controller_for(config)
    times = StepTimes()
    rl_tasks = campaign_rl_tasks(config, rl_tasks, index)     # this campaign's fixed task set
    fisher_batch = None
    if config.update == "ewc":
        rng = np.random.default_rng(step_seed(config.seed, index, 0, FISHER))
        chosen = rng.choice(len(rl_tasks), size=min(config.fisher_samples, len(rl_tasks)), replace=False)
        prompts = [build_prompt(policy.tokenizer, rl_tasks[i].prompt, rl_tasks[i].starter_code) for i in chosen]
        with policy.autocast():
            fisher_batch = sample(policy, prompts, n=1, temperature=config.temperature, top_p=config.top_p,
                                  max_new_tokens=config.max_new_tokens,
                                  seed=step_seed(config.seed, index, 0, FISHER))
    update = make_update(config.update, kl_beta=config.kl_beta, kl_estimator=config.kl_estimator,
                         max_new_tokens=config.max_new_tokens, ewc_lambda=config.ewc_lambda,
                         baseline=config.baseline, temperature=config.temperature, top_p=config.top_p,
                         policy=policy, fisher_samples=fisher_batch)
    # The start policy, only for a penalty that reads it (the KL): others skip its forward pass.
    reference = start_reference(policy) if update.penalty.needs_reference else None
    optimizer = torch.optim.AdamW(lora.trainable_parameters(policy.model), lr=config.lr * plan.lr_multiplier)
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
        kept = [] if log else None
        train = train_step(policy, reference, optimizer, update, dist.shard(batch), grader,
                           group_size=config.group_size, temperature=config.temperature,
                           top_p=config.top_p, max_new_tokens=config.max_new_tokens,
                           seed=step_seed(config.seed, index, step, TRAIN) + dist.rank, times=times, dist=dist,
                           micro_batch=config.micro_batch, grad_checkpointing=config.grad_checkpointing,
                           keep=kept)
        metrics = evaluate_step(policy, eval_tasks, grader,
                                seed=step_seed(config.seed, index, step, EVAL), **evaluation)
        metrics[K.SANDBOX_ERRORS] += train.pop(K.SANDBOX_ERRORS)   # the step's: training + evaluation
        curve.append(metrics[K.PASS_AT_1])
        stop = controller.should_stop(curve) if isinstance(controller, ES) else False
        if log:
            log.step(step, train, metrics, curve, last=step == plan.budget or stop, times=times, samples=kept)
        if stop:
            break
    # The last step is always a checkpoint: the next start may need it.
    assert log is None or log.saved_step == len(curve) - 1
    return times


def save_checkpoint(run, policy, index: int, step: int) -> tuple[str, int]:
    """(LoggedModel id, bytes of its files): the policy logged as a checkpoint of ``step``."""
    with tempfile.TemporaryDirectory() as folder:
        policy.save(folder)
        model_id = run.log_checkpoint(folder, name=f"c{index}-s{step}", step=step,
                                      tags={K.CAMPAIGN: index, K.STEP: step})
        return model_id, folder_bytes(folder)
