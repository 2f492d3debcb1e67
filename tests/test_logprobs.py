"""Log-probs of the sampled distribution (temperature + nucleus) against exact enumeration and the sampler."""

import math

import numpy as np
import pytest
import torch

from selfregress.logprobs import nucleus, sampled_logprobs, sampled_logprobs_and_entropy
from selfregress.token_draw import sample_tokens

# Base probabilities at T = 1. At T = 0.7 they become p^(1/0.7) / sum:
#   (0.500227, 0.255604, 0.123208, 0.069037, 0.033278, 0.018646), cumulative 0.500, 0.756, 0.879;
# the mass before the 4th token (0.879) reaches 0.8, so top_p = 0.8 keeps the first three,
# renormalised by 0.879039: (0.569061, 0.290776, 0.140163), entropy 0.955398 nats.
BASE = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]
KEPT = [0.569061, 0.290776, 0.140163]
ENTROPY = 0.9553981


def _permuted_logits():
    """(2, 3, 6) logits: every position the BASE distribution, its tokens permuted per position."""
    gen = torch.Generator().manual_seed(0)
    perms = torch.stack([torch.randperm(6, generator=gen) for _ in range(6)]).view(2, 3, 6)
    logits = torch.log(torch.tensor(BASE, dtype=torch.float64))[perms.argsort(-1)] + 3.0   # shift-invariant
    return logits, perms                          # perms[b, t, rank] = token id of the rank-th likeliest


def test_exact_enumeration_at_t07_top_p08():
    logits, perms = _permuted_logits()
    for rank in range(6):
        tokens = perms[..., rank]                                            # (2, 3)
        logprobs, entropy = sampled_logprobs_and_entropy(logits, tokens, 0.7, 0.8)
        if rank < 3:
            assert torch.allclose(logprobs, torch.full((2, 3), math.log(KEPT[rank]), dtype=torch.float64), atol=1e-6)
        else:   # off the nucleus: only reachable by float drift; counted in, finite (documented)
            q = np.array(BASE) ** (1 / 0.7)
            assert torch.allclose(logprobs, torch.full((2, 3), math.log(q[rank] / (q[:3].sum() + q[rank])),
                                                       dtype=torch.float64), atol=1e-9)
        if rank < 3:
            assert torch.allclose(entropy, torch.full((2, 3), ENTROPY, dtype=torch.float64), atol=1e-6)
    # top_p = 1: the tempered softmax itself.
    q = np.array(BASE) ** (1 / 0.7)
    q /= q.sum()
    assert torch.allclose(sampled_logprobs(logits, perms[..., 4], 0.7), torch.full((2, 3), math.log(q[4]),
                                                                                  dtype=torch.float64))


def test_gradient_flows_and_matches_the_formula():
    logits, perms = _permuted_logits()
    logits = (logits + 0.3 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1),
                                         dtype=torch.float64)).requires_grad_()
    tokens = perms[..., 1]
    for top_p in (0.8, 1.0):
        torch.autograd.gradcheck(lambda z: sampled_logprobs(z, tokens, 0.7, top_p, chunk_rows=4), (logits,))
        # Against autograd through an explicit masked log-softmax (the nucleus found by hand).
        out = sampled_logprobs(logits, tokens, 0.7, top_p, chunk_rows=4)
        weights = torch.softmax(logits.detach().float() / 0.7, -1).double()
        order = weights.sort(-1, descending=True).values
        before = order.cumsum(-1) - order
        threshold = order.masked_fill(before >= top_p * weights.sum(-1, keepdim=True), 2.0).min(-1, keepdim=True).values
        keep = weights >= threshold                                          # no ties here
        reference = (logits / 0.7).masked_fill(~keep, float("-inf")).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
        assert torch.allclose(out, reference, atol=1e-12)
        upstream = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        (g_out,) = torch.autograd.grad((out * upstream).sum(), logits)
        (g_ref,) = torch.autograd.grad((reference * upstream).sum(), logits)
        assert torch.allclose(g_out, g_ref, atol=1e-12) and g_out.abs().sum() > 0


def test_chunking_and_dtype_do_not_change_the_values():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 40, generator=gen) * 3
    tokens = logits.argmax(-1)
    full = sampled_logprobs(logits, tokens, 0.7, 0.8, chunk_rows=1000)
    assert torch.equal(sampled_logprobs(logits, tokens, 0.7, 0.8, chunk_rows=2), full)
    assert torch.allclose(sampled_logprobs(logits.bfloat16().float(), tokens, 1.0),
                          logits.bfloat16().float().log_softmax(-1).gather(-1, tokens[..., None])[..., 0], atol=1e-6)
    assert sampled_logprobs(logits.bfloat16(), tokens, 0.7, 0.8).dtype == torch.float32
    with pytest.raises(ValueError, match="temperature > 0"):
        sampled_logprobs(logits, tokens, 0.0)
    with pytest.raises(ValueError, match="disagree"):
        sampled_logprobs(logits, tokens[:, :2], 1.0)


def test_nucleus_ties_and_the_top_token():
    # Ties: equal weights go in token-id order. (0.4 at id 3; 0.3 at ids 0, 1, 2; top_p 0.5:
    # 0.4 first (before 0), then id 0 (before 0.4 < 0.5), then id 1 (before 0.7): dropped.)
    kept, ids = nucleus(torch.tensor([[0.3, 0.3, 0.3, 0.4]]), 0.5)
    assert dict(zip(ids[0].tolist(), kept[0].tolist())) == {3: pytest.approx(0.4), 0: pytest.approx(0.3), 1: 0.0, 2: 0.0}
    # The top token is kept at any top_p > 0.
    kept, ids = nucleus(torch.tensor([[0.1, 0.7, 0.2]]), 1e-6)
    assert (kept > 0).sum().item() == 1 and ids[0, 0].item() == 1
    # Ties across the 64-candidate boundary: 100 equal weights, top_p 0.3 keeps exactly ids 0..29.
    kept, ids = nucleus(torch.full((1, 100), 0.01), 0.3)
    assert sorted(ids[0][kept[0] > 0].tolist()) == list(range(30))


def test_the_sampler_draws_what_sampled_logprobs_says():
    # 200,000 draws per row from sample_tokens at T = 0.7, top_p = 0.8, against exp(log p~):
    # tokens off the nucleus never appear, and a chi-square over the kept ones holds.
    from scipy import stats
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 20, generator=gen) * 1.5                          # (rows, V)
    draws = 200_000
    for row in range(3):
        tokens, _ = sample_tokens(logits[row].expand(draws, 20), torch.rand(draws, generator=gen),
                                  temperature=0.7, top_p=0.8)
        counts = torch.bincount(tokens, minlength=20).double()
        every = torch.arange(20)
        expected = sampled_logprobs(logits[row].expand(20, 20)[None], every[None], 0.7, 0.8)[0].exp().double()
        kept = nucleus(torch.softmax(logits[row:row + 1] / 0.7, -1), 0.8)
        in_nucleus = torch.zeros(20, dtype=torch.bool).scatter_(0, kept[1][0], kept[0][0] > 0)
        assert counts[~in_nucleus].sum() == 0
        assert expected[in_nucleus].sum().item() == pytest.approx(1.0, abs=1e-6)
        chi2 = (((counts - draws * expected) ** 2) / (draws * expected))[in_nucleus].sum().item()
        assert stats.chi2.sf(chi2, int(in_nucleus.sum()) - 1) > 1e-3, (row, chi2)
        assert torch.allclose(counts[in_nucleus] / draws, expected[in_nucleus], atol=5e-3)


def test_ties_inside_sampled_logprobs_and_a_strided_slice():
    # 100 equal logits, top_p = 0.3: the nucleus is ids 0..29 (id order), each 1/30.
    logits = torch.zeros(1, 2, 100)
    tokens = torch.tensor([[0, 29]])
    assert torch.allclose(sampled_logprobs(logits, tokens, 0.7, 0.3), torch.full((1, 2), -math.log(30)))
    # The model's output is (B, P + T, V) and the completion's logits a strided slice of it:
    # same values and the gradient lands on the right rows, with or without chunking.
    gen = torch.Generator().manual_seed(6)
    full = torch.randn(2, 7, 30, generator=gen, requires_grad=True)
    tokens = torch.randint(0, 30, (2, 4), generator=gen)
    sliced = sampled_logprobs(full[:, 2:-1], tokens, 0.7, 0.9, chunk_rows=3)
    copied = full[:, 2:-1].detach().clone().requires_grad_()
    reference = sampled_logprobs(copied, tokens, 0.7, 0.9, chunk_rows=100)
    assert torch.equal(sliced, reference)
    sliced.sum().backward()
    reference.sum().backward()
    assert torch.equal(full.grad[:, 2:-1], copied.grad)
    assert full.grad[:, :2].abs().sum() == 0 and full.grad[:, -1].abs().sum() == 0
