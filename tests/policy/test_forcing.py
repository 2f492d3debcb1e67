"""forcing.completion_logprobs: each distinct prompt run once, its keys/values gathered to the rows
that answer it, must be the one-pass function over the repeated rows: same log-probs, entropy and
gradients up to float rounding, on a grouped batch, a sub-batch and a LoRA-wrapped model."""

from __future__ import annotations

import pytest
import torch

from selfregress.forcing import completion_logprobs
from selfregress.sampling import sample


def _both(model, samples, **kwargs):
    out = []
    for share in (True, False):
        model.zero_grad(set_to_none=True)
        logprobs, entropy = completion_logprobs(model, samples, share_prompts=share, **kwargs)
        (logprobs.sum() * 0.37 + (logprobs ** 2).sum() * 0.01).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]
        out.append((logprobs.detach(), None if entropy is None else entropy.detach(), grads))
    return out


@pytest.mark.parametrize("kwargs", [dict(), dict(temperature=0.7, top_p=0.9), dict(entropy=False)])
def test_shared_prompts_give_the_one_pass_logprobs_and_gradients(eos_heavy, prompts, kwargs):
    for p in eos_heavy.model.parameters():
        p.requires_grad_(True)
    settings = {k: v for k, v in kwargs.items() if k in ("temperature", "top_p")}
    samples = sample(eos_heavy, prompts, n=4, max_new_tokens=20, seed=3, **settings)
    assert len(torch.unique(samples.prompt_index)) == 3 and len(samples) == 12
    (shared, shared_entropy, shared_grads), (one, one_entropy, one_grads) = _both(eos_heavy.model, samples, **kwargs)
    torch.testing.assert_close(shared, one, atol=2e-5, rtol=0)
    assert torch.equal(shared == 0, one == 0)                  # padding stays exactly 0
    if shared_entropy is not None:
        torch.testing.assert_close(shared_entropy, one_entropy, atol=2e-5, rtol=0)
    assert len(shared_grads) == len(one_grads) > 0
    for a, b in zip(shared_grads, one_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # and both recompute the sampler's own log-probs (drawn at the same settings)
    torch.testing.assert_close(shared, samples.logprobs, atol=1e-4, rtol=0)


def test_a_sub_batch_with_unequal_groups_and_a_single_row(eos_heavy, prompts):
    samples = sample(eos_heavy, prompts, n=3, max_new_tokens=12, seed=4)
    for rows in ([0, 1, 4, 7, 8], [5]):
        part = samples.select(rows)
        (shared, _, _), (one, _, _) = _both(eos_heavy.model, part)
        torch.testing.assert_close(shared, one, atol=2e-5, rtol=0)


def test_one_token_completions(eos_heavy, prompts):
    samples = sample(eos_heavy, prompts, n=2, max_new_tokens=1, seed=5)
    assert samples.completion_ids.shape[1] == 1
    (shared, _, _), (one, _, _) = _both(eos_heavy.model, samples)
    torch.testing.assert_close(shared, one, atol=2e-5, rtol=0)
