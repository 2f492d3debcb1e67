"""One step of a campaign, and its held-out evaluation.

A step reads top to bottom: sample prompts -> generate -> grade -> log-probs -> advantages ->
loss -> optimizer step. Only the update differs between conditions: the advantage function and the
penalty are chosen once, by name, in ``updates.make_update``. Both functions return plain
``dict[str, float]`` metrics; the campaign (``campaign.py``) logs them.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from selfregress import lora
from selfregress import metric_keys as K
from selfregress.distributed import SINGLE, Dist
from selfregress.errors import UserError
from selfregress.evaluation import evaluate
from selfregress.grading import fail_if_unresolved, grade_retrying
from selfregress.losses import distinct_ratio, k3_sequence, policy_gradient_loss
from selfregress.policy import build_prompt, extract_program
from selfregress.forcing import completion_logprobs
from selfregress.sample_log import sample_lines
from selfregress.sampling import sample
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


def train_step(policy, reference: Reference | None, optimizer, update: Update, tasks: Sequence, grader, *,
               group_size: int, temperature: float, top_p: float, max_new_tokens: int,
               seed: int, times: StepTimes, dist: Dist = SINGLE, micro_batch: int = 0,
               grad_checkpointing: bool = False, keep: list | None = None) -> dict[str, float]:
    """Sample -> grade -> log-probs -> advantages -> loss -> optimizer step. Returns the train/* metrics.

    ``reference`` (the campaign's start policy) is read only if ``update.penalty.needs_reference``
    (the kl condition), and may be None otherwise; so ``train/kl_to_start`` is logged by kl only.
    ``policy.autocast()`` (bf16 or nothing) is around the forward passes; the backward pass and
    the optimizer step are outside it, on the fp32 weights.

    Under ``accelerate launch``, ``tasks`` is this process's share of the step's prompts; the
    gradients are averaged across processes before the (identical) optimizer step.

    ``micro_batch`` > 0 (and below the batch's rows): steps 4-6 run ``micro_batch`` rows at a time,
    each backward accumulating into the same gradients (``micro_batch_backward``), so a real
    model's (rows x tokens x vocabulary) logits and activations need not fit at once. 0: all rows.
    ``grad_checkpointing``: the decoder layers' activations are recomputed in the backward instead
    of kept (``checkpointed``). ``keep``: a list that gets one ``sample_log`` line per sample
    (reply, extracted program, verdict).
    """
    # 1-2. Generate G samples for each prompt of the batch.
    # The model stays in eval mode throughout: dropout off for sampling and the loss alike,
    # so the loss differentiates the same distribution that was sampled.
    t0 = time.perf_counter()
    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    with policy.autocast():
        samples = sample(policy, prompts, n=group_size, temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new_tokens, seed=seed)
    programs = [extract_program(text) for text in samples.texts]
    t1 = time.perf_counter()

    # 3. Grade: the reward is 1 iff every test passes. A sandbox_error is retried once; one that
    # persists (on any process) fails the step before anything is trained on it.
    graded = grade_retrying(grader, [(p, tasks[i // group_size]) for i, p in enumerate(programs)])
    sandbox_errors, unresolved = _total(dist, graded.sandbox_errors, graded.unresolved)
    fail_if_unresolved("training step", sandbox_errors, unresolved, len(programs) * dist.world, graded.detail)
    rewards = torch.tensor([v.reward for v in graded.verdicts], device=samples.completion_ids.device)   # (B,)
    if keep is not None:
        keep.extend(sample_lines(tasks, group_size, samples.texts, programs, graded.verdicts))
    t2 = time.perf_counter()

    # 4-6. Log-probs, advantages, loss, backward: the whole batch at once, or in micro-batches.
    optimizer.zero_grad(set_to_none=True)
    backward = micro_batch_backward if 0 < micro_batch < len(samples) else whole_batch_backward
    loss, logprobs, entropy, ref_logprobs = backward(
        policy, reference, update, samples, rewards, micro_batch, group_size=group_size,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, checkpoint=grad_checkpointing)
    return _finish_step(policy, optimizer, dist, times, (t0, t1, t2), loss, logprobs, entropy,
                        ref_logprobs, samples.completion_mask, rewards, programs, sandbox_errors)


def whole_batch_backward(policy, reference, update: Update, samples, rewards: torch.Tensor, rows: int = 0, *,
                         group_size: int, temperature: float, top_p: float, max_new_tokens: int,
                         checkpoint: bool = False):
    """Steps 4-6 of ``train_step`` on every row at once (``rows`` is unused: the signature is
    ``micro_batch_backward``'s). Returns (loss, logprobs (B, T), entropy (B, T), ref_logprobs | None)."""
    # 4. Log-probs of the distribution that was sampled (temperature, nucleus); the start
    # policy's (same temperature, no nucleus: its own could exclude a drawn token) only when
    # the penalty reads them.
    with policy.autocast(), checkpointed(policy.model, checkpoint):
        logprobs, entropy = completion_logprobs(policy.model, samples, temperature=temperature,
                                                top_p=top_p, share_prompts=not checkpoint)   # (B, T) each
    mask = samples.completion_mask                                              # (B, T)
    ref_logprobs = None
    if update.penalty.needs_reference:
        with torch.no_grad(), policy.autocast(), reference.active():
            ref_logprobs, _ = completion_logprobs(reference.model, samples, temperature=temperature,
                                                  entropy=False)               # (B, T)

    # 5. Advantages of the reward, less the penalty's share of it (k1's beta * log r(y)).
    advantages = update.advantages_for(rewards - update.penalty.reward(logprobs, ref_logprobs, mask),
                                       group_size)                             # (B,)

    # 6. Loss: policy gradient + the penalty's loss term.
    pg_loss = policy_gradient_loss(logprobs, mask, advantages, max_new_tokens)
    loss = pg_loss + update.penalty.loss(policy, logprobs, ref_logprobs, mask)
    loss.backward()
    return loss, logprobs, entropy, ref_logprobs


def _finish_step(policy, optimizer, dist, times, marks, loss, logprobs, entropy, ref_logprobs, mask,
                 rewards, programs, sandbox_errors) -> dict[str, float]:
    """7. Optimizer step, once the gradients are in (clipped); then the times and train/* metrics."""
    t0, t1, t2 = marks
    trained = lora.trainable_parameters(policy.model)      # the adapters under LoRA, else all
    dist.average_gradients(trained)
    grad_norm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
    optimizer.step()
    t3 = time.perf_counter()
    times.sampling += t1 - t0
    times.grading += t2 - t1
    times.update += t3 - t2

    tokens = mask.sum().clamp(min=1)
    metrics = {
        K.TRAIN_REWARD_MEAN: rewards.mean().item(),
        K.TRAIN_ENTROPY: ((entropy.detach() * mask).sum() / tokens).item(),
        K.TRAIN_LOSS: loss.item(),
        K.TRAIN_GRAD_NORM: float(grad_norm),
        K.TRAIN_RESPONSE_LENGTH: mask.sum(dim=1).float().mean().item(),
        K.TRAIN_DISTINCT_RATIO: distinct_ratio(programs),
    }
    if ref_logprobs is not None:   # KL(pi || pi_start) of whole completions: mean over them of sum_t k3
        metrics[K.TRAIN_KL_TO_START] = k3_sequence(logprobs.detach(), ref_logprobs, mask).mean().item()
    return {**dist.mean(metrics), K.SANDBOX_ERRORS: float(sandbox_errors)}


def micro_batch_backward(policy, reference, update: Update, samples, rewards: torch.Tensor, rows: int, *,
                         group_size: int, temperature: float, top_p: float, max_new_tokens: int,
                         checkpoint: bool = False):
    """Steps 4-6 of ``train_step``, ``rows`` rows at a time, gradients accumulated: the same gradient.

    Why it is the same: the policy-gradient loss is -sum_i A_i s_i / (B * L) over the B rows (L =
    ``max_new_tokens``), and a loss-side KL term (k2, k3) is beta * sum_i v_i / (B * L); a chunk of
    b rows computes its own sum over b rows divided by (b * L), so scaling it by b / B makes the
    chunks' losses add up to the whole batch's, and backward is linear. EWC's term reads only the
    weights: added once. What couples the rows is the advantage (GRPO's group statistics, a
    baseline) and k1's reward shaping, which reads every row's log r(y): both are computed first,
    for the whole batch, from no-grad passes (the start policy's and the policy's own log-probs,
    under kl only), so kl pays one extra forward here. Only float rounding differs from one pass
    (``tests/policy/test_micro_batch.py`` checks the gradients of every update rule). Chunks are whole
    rows in order; with ``rows`` a multiple of ``group_size`` each prompt's pass is shared as usual.
    Returns (loss, logprobs (B, T) detached, entropy (B, T), ref_logprobs (B, T) | None).
    """
    total = len(samples)
    chunks = [list(range(i, min(i + rows, total))) for i in range(0, total, rows)]
    mask = samples.completion_mask                                              # (B, T)
    ref_logprobs = None
    shaped = rewards
    if update.penalty.needs_reference:
        with torch.no_grad(), policy.autocast():
            own = torch.cat([completion_logprobs(policy.model, samples.select(c), temperature=temperature,
                                                 top_p=top_p, entropy=False)[0] for c in chunks])
            with reference.active():
                ref_logprobs = torch.cat([completion_logprobs(reference.model, samples.select(c),
                                                              temperature=temperature, entropy=False)[0]
                                          for c in chunks])
        shaped = rewards - update.penalty.reward(own, ref_logprobs, mask)
    advantages = update.advantages_for(shaped, group_size)                      # (B,)
    loss_value, logprobs, entropy = 0.0, [], []
    for c in chunks:
        part, index = samples.select(c), torch.tensor(c, device=advantages.device)
        with policy.autocast(), checkpointed(policy.model, checkpoint):
            lp, ent = completion_logprobs(policy.model, part, temperature=temperature, top_p=top_p,
                                          share_prompts=not checkpoint)
        loss = policy_gradient_loss(lp, part.completion_mask, advantages[index], max_new_tokens)
        if ref_logprobs is not None:
            loss = loss + update.penalty.loss(policy, lp, ref_logprobs[index], part.completion_mask)
        (loss * (len(c) / total)).backward()
        loss_value += loss.item() * len(c) / total
        logprobs.append(lp.detach())
        entropy.append(ent.detach())
    if ref_logprobs is None:                     # a weights-only term (EWC), or none
        extra = update.penalty.loss(policy, samples.logprobs, None, mask)
        if extra.requires_grad:
            extra.backward()
        loss_value += float(extra)
    return torch.tensor(loss_value), torch.cat(logprobs), torch.cat(entropy), ref_logprobs


@contextlib.contextmanager
def checkpointed(model, enabled: bool):
    """Gradient checkpointing for the forward passes inside: each decoder layer keeps only its input
    and recomputes its activations in the backward (transformers' ``GradientCheckpointingLayer``,
    non-reentrant). transformers checkpoints a layer only while that layer is in training mode, and
    the policy stays in eval mode (no dropout: the loss must differentiate the distribution that
    was sampled); so only the layers' own ``training`` flag is set here, not their submodules',
    whose dropout stays off. A checkpointed layer drops its KV cache, so the caller runs one pass
    over the rows (``share_prompts=False``) instead of sharing each prompt's. The same function
    of the weights: ``tests/policy/test_micro_batch.py`` compares the gradients."""
    if not enabled:
        yield
        return
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise UserError(f"grad_checkpointing: {type(model).__name__}'s layers do not support it "
                        "(no transformers GradientCheckpointingLayer): run without it")
    if not any(getattr(layer, "gradient_checkpointing", False) for layer in layers):
        if hasattr(model, "activation_checkpointing_enable"):   # transformers >= 5.x's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    was = [layer.training for layer in layers]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer, mode in zip(layers, was):
            layer.training = mode


def _total(dist: Dist, *counts: int) -> tuple[int, ...]:
    """Counts summed over the training processes (the counts themselves on one process)."""
    if dist.world == 1:
        return counts
    return tuple(sum(column) for column in zip(*dist.gather(counts)))


@dataclass(frozen=True)
class Reference:
    """The campaign's start policy, for the KL penalty: ``model`` computes it inside ``active()``."""
    model: torch.nn.Module
    active: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def start_reference(policy) -> Reference:
    """The start policy without a second copy of the model under LoRA: the base with the adapters
    off while the adapter is still B = 0 (a fresh one: the start *is* the base), else a frozen
    copy of the start adapter (``lora.snapshot_start``, a few MB). Under full fine-tuning, a
    frozen copy of the model."""
    adapted = policy.adapter
    if adapted is None:
        return Reference(frozen_copy(policy.model))
    if lora.is_fresh(adapted):
        return Reference(policy.model, lambda: lora.base_model_off(adapted))
    lora.snapshot_start(adapted)
    return Reference(policy.model, lambda: lora.start_adapter(adapted))


def frozen_copy(model):
    """An eval-mode copy with no gradients (the full fine-tuning reference)."""
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
                      top_p=top_p, max_new_tokens=max_new_tokens, seed=seed + 7919 * dist.rank, check=False)
    even = (dist.rank + dist.world * np.arange(len(result.successes))) % 2 == 0   # global task index
    successes, trials, even_successes, even_trials, sandbox_errors, unresolved = _total(
        dist, int(result.successes.sum()), result.trials, int(result.successes[even].sum()),
        int(even.sum()) * result.samples, result.sandbox_errors, result.unresolved)
    fail_if_unresolved("evaluation", sandbox_errors, unresolved, trials, result.sandbox_detail)
    times.evaluation += time.perf_counter() - t0
    return {K.PASS_AT_1: float(successes / max(trials, 1)), K.EVAL_SUCCESSES: float(successes),
            K.EVAL_TRIALS: float(trials), K.EVAL_SUCCESSES_EVEN: float(even_successes),
            K.EVAL_TRIALS_EVEN: float(even_trials), K.SANDBOX_ERRORS: float(sandbox_errors)}
