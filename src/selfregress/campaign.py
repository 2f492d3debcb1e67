"""One campaign: ``budget`` policy-gradient steps from a start checkpoint, evaluated every step.

A step reads top to bottom: sample prompts -> generate -> grade -> advantages -> loss ->
optimizer step -> evaluate -> log. Only the update differs between conditions: the advantage
function and the penalty are chosen once, by name, in ``make_update``.

Training code returns plain ``dict[str, float]``; the ``log`` callback (the chain's) writes them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from selfregress import metric_keys as K
from selfregress.distributed import SINGLE, Dist
from selfregress.evaluation import evaluate
from selfregress.losses import (ADVANTAGES, distinct_ratio, ewc_penalty, kl_k3,
                                policy_gradient_loss, update_ema)
from selfregress.policy import build_prompt, completion_logprobs, extract_program, sample


def step_seed(*parts: int) -> int:
    """A seed that depends only on (seed, campaign, step, purpose): a resumed chain replays exactly."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


# ---- penalties: a new variant is a new class, chosen once by name --------------------------
class Penalty(Protocol):
    def __call__(self, policy, samples, logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor: ...


def no_penalty(policy, samples, logprobs, ref_logprobs):
    return logprobs.new_zeros(())


@dataclass
class KLPenalty:
    """beta * KL(pi || pi_start), k3 estimator on the step's own samples."""
    beta: float

    def __call__(self, policy, samples, logprobs, ref_logprobs):
        return self.beta * kl_k3(logprobs, ref_logprobs, samples.completion_mask)


@dataclass
class EWCPenalty:
    """lambda/2 * sum_i F_i (theta_i - theta*_i)^2, Fisher and anchor taken at the campaign start."""
    lam: float
    anchors: list[torch.Tensor]
    fisher: list[torch.Tensor]

    def __call__(self, policy, samples, logprobs, ref_logprobs):
        params = [p for p in policy.model.parameters() if p.requires_grad]
        return self.lam * ewc_penalty(params, self.anchors, self.fisher)


def diagonal_fisher(policy, samples) -> list[torch.Tensor]:
    """Empirical diagonal Fisher: the mean over sequences of (d log p(y|x) / d theta)^2.

    One backward pass per sequence (per-sequence gradients must be squared before averaging);
    cheap for the tiny model, and taken once per campaign.
    """
    params = [p for p in policy.model.parameters() if p.requires_grad]
    fisher = [torch.zeros_like(p) for p in params]
    for row in range(samples.completion_ids.shape[0]):
        one = samples.select([row])
        logprobs, _ = completion_logprobs(policy.model, one)
        grads = torch.autograd.grad((logprobs * one.completion_mask).sum(), params, allow_unused=True)
        for f, g in zip(fisher, grads):
            if g is not None:
                f += g.detach() ** 2
    n = samples.completion_ids.shape[0]
    return [f / n for f in fisher]


@dataclass
class Update:
    advantages: Callable[..., torch.Tensor]
    penalty: Penalty
    baseline: str                 # "none" | "mean" | "ema" (REINFORCE only)
    ema: float | None = None      # running EMA of the reward, for baseline == "ema"

    def advantages_for(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        if self.advantages is not ADVANTAGES["reinforce"] or self.baseline == "none":
            return self.advantages(rewards, group_size)
        if self.baseline == "mean":
            return self.advantages(rewards, group_size, baseline=rewards.mean().item())
        baseline = 0.0 if self.ema is None else self.ema
        self.ema = update_ema(self.ema, rewards.mean().item())
        return self.advantages(rewards, group_size, baseline=baseline)


# ---- one step --------------------------------------------------------------------------------
@dataclass
class StepTimes:
    sampling: float = 0.0
    grading: float = 0.0
    update: float = 0.0
    evaluation: float = 0.0
    tracking: float = 0.0


def train_step(policy, ref_model, optimizer, update: Update, tasks: Sequence, grader, *,
               group_size: int, temperature: float, top_p: float, max_new_tokens: int,
               seed: int, times: StepTimes, dist: Dist = SINGLE) -> dict[str, float]:
    """Sample -> grade -> advantages -> loss -> optimizer step. Returns the train/* metrics.

    Under ``accelerate launch``, ``tasks`` is this process's share of the step's prompts; the
    gradients are averaged across processes before the (identical) optimizer step.
    """
    # 1-2. Generate G samples for each prompt of the batch.
    # The model stays in eval mode throughout: dropout off for sampling and the loss alike,
    # so the loss differentiates the same distribution that was sampled.
    t0 = time.perf_counter()
    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    samples = sample(policy, prompts, n=group_size, temperature=temperature, top_p=top_p,
                     max_new_tokens=max_new_tokens, seed=seed)
    programs = [extract_program(text) for text in samples.texts]
    t1 = time.perf_counter()

    # 3. Grade: the reward is 1 iff every test passes.
    verdicts = grader.grade_many([(p, tasks[i // group_size]) for i, p in enumerate(programs)])
    rewards = torch.tensor([v.reward for v in verdicts])                       # (B,)
    t2 = time.perf_counter()

    # 4. Advantages.
    advantages = update.advantages_for(rewards, group_size)                    # (B,)

    # 5. Loss: policy gradient + the condition's penalty.
    logprobs, entropy = completion_logprobs(policy.model, samples)             # (B, T) each
    with torch.no_grad():
        ref_logprobs, _ = completion_logprobs(ref_model, samples)              # (B, T)
    mask = samples.completion_mask                                              # (B, T)
    pg_loss = policy_gradient_loss(logprobs, mask, advantages, max_new_tokens)
    loss = pg_loss + update.penalty(policy, samples, logprobs, ref_logprobs)

    # 6. Optimizer step.
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    dist.average_gradients(policy.model.parameters())
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), 1.0)
    optimizer.step()
    t3 = time.perf_counter()
    times.sampling += t1 - t0
    times.grading += t2 - t1
    times.update += t3 - t2

    tokens = mask.sum().clamp(min=1)
    with torch.no_grad():
        kl = kl_k3(logprobs.detach(), ref_logprobs, mask).item()
    return dist.mean({
        K.TRAIN_REWARD_MEAN: rewards.mean().item(),
        K.TRAIN_ENTROPY: ((entropy.detach() * mask).sum() / tokens).item(),
        K.TRAIN_KL_TO_START: kl,
        K.TRAIN_LOSS: loss.item(),
        K.TRAIN_GRAD_NORM: float(grad_norm),
        K.TRAIN_RESPONSE_LENGTH: mask.sum(dim=1).float().mean().item(),
        K.TRAIN_DISTINCT_RATIO: distinct_ratio(programs),
    })


def make_update(condition_update: str, *, kl_beta: float, ewc_lambda: float, baseline: str,
                policy=None, fisher_samples=None) -> Update:
    """The condition's update, chosen once. ``condition_update`` is reinforce | kl | ewc | grpo."""
    advantage = "grpo" if condition_update == "grpo" else "reinforce"
    penalty: Penalty = no_penalty
    if condition_update == "kl":
        penalty = KLPenalty(kl_beta)
    elif condition_update == "ewc":
        params = [p for p in policy.model.parameters() if p.requires_grad]
        penalty = EWCPenalty(ewc_lambda, [p.detach().clone() for p in params],
                             diagonal_fisher(policy, fisher_samples))
    return Update(ADVANTAGES[advantage], penalty, baseline)


def frozen_copy(model):
    """The campaign's start policy, for KL: an eval-mode copy with no gradients."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def evaluate_step(policy, eval_tasks, grader, *, samples: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int, times: StepTimes, dist: Dist = SINGLE) -> dict[str, float]:
    """Held-out pass@1; under ``accelerate launch`` each process evaluates a share of the tasks
    and the counts are gathered, so every process returns the same numbers."""
    t0 = time.perf_counter()
    result = evaluate(policy, dist.shard(eval_tasks), grader, samples=samples, temperature=temperature,
                      top_p=top_p, max_new_tokens=max_new_tokens, seed=seed + 7919 * dist.rank)
    successes, trials = result.successes.sum(), result.trials
    if dist.world > 1:
        counts = dist.gather((int(successes), trials))
        successes, trials = sum(c[0] for c in counts), sum(c[1] for c in counts)
    times.evaluation += time.perf_counter() - t0
    return {K.PASS_AT_1: float(successes / max(trials, 1)), K.EVAL_SUCCESSES: float(successes),
            K.EVAL_TRIALS: float(trials)}
