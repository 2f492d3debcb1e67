"""step.micro_batch_backward must give the gradient of step.whole_batch_backward (the update a step
takes with ``micro_batch=0``) for every update rule: the chunks' losses, each scaled by its share of
the rows, add up to the whole batch's; GRPO's group advantages and k1's reward shaping are computed
for the whole batch before any chunk. Checked on a real (tiny, random) Qwen2 with real samples, and
with rewards that are not all equal, so that every gradient is non-zero."""

from __future__ import annotations

import copy

import pytest
import torch

from selfregress.sampling import sample
from selfregress.step import Reference, frozen_copy, micro_batch_backward, whole_batch_backward
from selfregress.updates import make_update

GROUP = 4
RULES = [("reinforce", "k1"), ("grpo", "k1"), ("kl", "k1"), ("kl", "k2"), ("kl", "k3"), ("ewc", "k1")]


def _gradient(backward, policy, reference, update, samples, rewards, rows):
    policy.model.zero_grad(set_to_none=True)
    loss, logprobs, entropy, ref = backward(policy, reference, update, samples, rewards, rows,
                                            group_size=GROUP, temperature=0.8, top_p=1.0, max_new_tokens=24)
    grads = [p.grad.clone() for p in policy.model.parameters() if p.grad is not None]
    return float(loss.detach()), logprobs.detach(), entropy.detach(), ref, grads


@pytest.mark.parametrize("rule, estimator", RULES)
@pytest.mark.parametrize("rows", [4, 5])   # whole groups, and chunks that split a group
def test_micro_batches_give_the_whole_batch_gradient(qwen, prompts, rule, estimator, rows):
    for p in qwen.model.parameters():
        p.requires_grad_(True)
    samples = sample(qwen, prompts, n=GROUP, temperature=0.8, max_new_tokens=24, seed=5)   # 12 rows
    start = frozen_copy(qwen.model)
    with torch.no_grad():                     # move the policy away from its start: KL and EWC act
        generator = torch.Generator().manual_seed(1)
        for p in qwen.model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
    reference = Reference(start)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    options = dict(kl_beta=0.5, kl_estimator=estimator, max_new_tokens=24, ewc_lambda=50.0,
                   baseline="none", temperature=0.8, top_p=1.0)
    if rule == "ewc":
        options.update(policy=qwen, fisher_samples=samples.select(list(range(4))))
    update = make_update(rule, **options)
    whole = _gradient(whole_batch_backward, qwen, reference, copy.deepcopy(update), samples, rewards, 0)
    micro = _gradient(micro_batch_backward, qwen, reference, copy.deepcopy(update), samples, rewards, rows)

    assert micro[0] == pytest.approx(whole[0], rel=1e-5, abs=1e-7)            # the loss
    torch.testing.assert_close(micro[1], whole[1], atol=2e-5, rtol=0)          # log-probs
    torch.testing.assert_close(micro[2], whole[2], atol=2e-5, rtol=0)          # entropy
    assert (micro[3] is None) == (whole[3] is None) == (rule != "kl")
    assert len(micro[4]) == len(whole[4]) > 0
    assert max(float(g.abs().max()) for g in whole[4]) > 1e-4                 # a gradient to compare
    for a, b in zip(micro[4], whole[4]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_a_wrong_share_would_be_caught(qwen, prompts):
    """The comparison above can fail: chunks that each normalise by their own rows (no b / B
    scaling) give a gradient off by the number of chunks."""
    samples, rewards, update = _batch(qwen, prompts, "reinforce")
    whole = _gradient(whole_batch_backward, qwen, None, update, samples, rewards, 0)[4]
    unscaled = _gradient(lambda *a, **k: _unscaled(*a, **k), qwen, None, update, samples, rewards, 4)[4]
    for a, b in zip(unscaled, whole):
        torch.testing.assert_close(a, 3 * b, atol=1e-6, rtol=1e-4)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(unscaled[0], whole[0], atol=1e-6, rtol=1e-4)


def _batch(qwen, prompts, rule: str):
    """12 real samples (3 prompts x GROUP), rewards not all equal, and a penalty-free update."""
    for p in qwen.model.parameters():
        p.requires_grad_(True)
    samples = sample(qwen, prompts, n=GROUP, temperature=0.8, max_new_tokens=24, seed=5)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    return samples, rewards, make_update(rule, kl_beta=0.0, kl_estimator="k1", max_new_tokens=24,
                                         ewc_lambda=0.0, baseline="none", temperature=0.8, top_p=1.0)


def _unscaled(policy, reference, update, samples, rewards, rows, **kwargs):
    """Three chunks of 4 rows through whole_batch_backward, each as if it were the whole batch."""
    out = None
    for start in range(0, len(samples), rows):
        index = list(range(start, start + rows))
        out = whole_batch_backward(policy, reference, update, samples.select(index), rewards[index], **kwargs)
    return out


@pytest.mark.parametrize("backward, rows", [(whole_batch_backward, 0), (micro_batch_backward, 4)])
def test_gradient_checkpointing_recomputes_the_layers_and_keeps_the_gradient(qwen, prompts, backward, rows):
    """grad_checkpointing: every decoder layer runs again in the backward (its attention is called
    twice per pass), the gradient is the plain one up to rounding, and the model is left as it was
    (eval mode, no layer left in training mode: sampling and dropout untouched)."""
    samples, rewards, update = _batch(qwen, prompts, "grpo")
    plain = _gradient(backward, qwen, None, update, samples, rewards, rows)
    calls = []
    attention = qwen.model.model.layers[0].self_attn
    hook = attention.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    try:
        qwen.model.zero_grad(set_to_none=True)
        backward(qwen, None, update, samples, rewards, rows, group_size=GROUP, temperature=0.8, top_p=1.0,
                 max_new_tokens=24, checkpoint=True)
    finally:
        hook.remove()
    checkpointed = [p.grad.clone() for p in qwen.model.parameters() if p.grad is not None]
    passes = 1 if rows == 0 else 3                      # one pass over the 12 rows, or 3 chunks of 4
    assert len(calls) == 2 * passes                     # each forward, then its recompute in the backward
    assert len(checkpointed) == len(plain[4]) > 0
    for a, b in zip(checkpointed, plain[4]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert not qwen.model.training and not any(m.training for m in qwen.model.modules())
