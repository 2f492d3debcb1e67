"""One step of a campaign, and its held-out evaluation.

A step reads top to bottom: sample prompts -> generate -> grade -> advantages -> loss ->
optimizer step. Only the update differs between conditions: the advantage function and the
penalty are chosen once, by name, in ``updates.make_update``. Both functions return plain
``dict[str, float]`` metrics; the campaign (``campaign.py``) logs them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from selfregress import metric_keys as K
from selfregress.distributed import SINGLE, Dist
from selfregress.evaluation import evaluate
from selfregress.losses import distinct_ratio, kl_k3, policy_gradient_loss
from selfregress.policy import build_prompt, extract_program
from selfregress.sampling import completion_logprobs, sample
from selfregress.updates import Update


def step_seed(*parts: int) -> int:
    """A seed that depends only on (seed, campaign, step, purpose): a resumed chain replays exactly."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


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
