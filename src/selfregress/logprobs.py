"""Log-probs and entropy of the distribution that was sampled: temperature and nucleus included.

The sampler (``token_draw.sample_tokens``) draws token y from p~ = softmax(z / T) restricted to
the top-p nucleus N and renormalised. The policy-gradient loss, the KL, the entropy and the
EWC Fisher must differentiate that same distribution:

    log p~(y) = z_y / T - logsumexp_{j in N}(z_j / T)    (y in N),
    d log p~(y) / d z_j = (1[j = y] - p~_j) / T           (p~_j = 0 off N; N is locally constant),
    H(p~) = logsumexp_{j in N}(z_j / T) - sum_{j in N} p~_j z_j / T.

The nucleus rule is ``nucleus`` below, and the sampler calls this very function so that
both keep the same tokens, ties included: sort by weight, highest first, equal weights in
token-id order; keep a token iff the mass of the tokens before it is < top_p * total; so the
top token is always kept. A token outside the recomputed nucleus can only come
from float drift between the KV-cached decode and the teacher-forced pass, at the boundary;
it is counted into the nucleus (a finite log-prob, not -inf that would poison the step).

Memory: the logits (B, T, V) are the only full-size tensor. Rows are processed in chunks of
about ``CHUNK_ELEMENTS`` floats, and a custom backward recomputes each chunk's p~ instead of
saving a (B, T, V) log_softmax (``benchmarks/logprobs.py`` measures the difference). With
top_p = 1 a chunk costs one logsumexp and a gather: no softmax, no sort.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The nucleus is looked for among this many most likely tokens first, and a full sort is the
# fallback: a full sort of a (256, 1000) batch costs ~16 ms on CPU, top-64 ~3 ms.
NUCLEUS_CANDIDATES = 64
# Floats per chunk of rows (32 MB in float32): rows per chunk = CHUNK_ELEMENTS // V.
CHUNK_ELEMENTS = 1 << 23


def nucleus(weights: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """(R, V) weights -> (R, K) weights of the top-p nucleus (others 0) and their token ids.

    Sorted by weight descending, equal weights in ascending id order; a token is kept iff the
    mass of the tokens before it is < top_p * total (so the first is always kept). The top-K candidates
    suffice when every kept token weighs strictly more than the K-th candidate: then all ties
    that matter are among them. Otherwise (a wide nucleus, or ties at the K-th weight) the
    whole row set is sorted. The sampler (``token_draw``) and the scorer (below) both use it.
    """
    total = weights.sum(-1, keepdim=True)                                    # (R, 1)
    threshold = top_p * total
    k = min(NUCLEUS_CANDIDATES, weights.shape[-1])
    if k < weights.shape[-1]:
        top, ids = weights.topk(k, dim=-1)                                   # (R, K)
        strictly_above = (top * (top > top[:, -1:])).sum(-1, keepdim=True)
        if bool((strictly_above >= threshold).all()):
            by_id = ids.argsort(-1)                                          # ties: id order
            top, ids = top.gather(1, by_id), ids.gather(1, by_id)
            top, order = top.sort(dim=-1, descending=True, stable=True)
            return _truncate(top, ids.gather(1, order), threshold)
    top, ids = weights.sort(dim=-1, descending=True, stable=True)                # (R, V)
    return _truncate(top, ids, threshold)


def _truncate(top: Tensor, ids: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    before = top.cumsum(-1) - top                                            # mass of likelier tokens
    return top.masked_fill(before >= threshold, 0.0), ids


def _chunk(logits: Tensor, tokens: Tensor, temperature: float, top_p: float, entropy: bool,
           probs: bool, boundary: tuple[Tensor, Tensor] | None = None):
    """One chunk: logits (R, V), tokens (R,) -> (log p~(y) (R,), H (R,) | None, p~ (R, V) | None,
    boundary).

    ``boundary`` = (weight, id) of each row's last kept token (R,), (R,): the nucleus is a
    prefix of the (weight desc, id asc) order, so it is exactly {j: w_j > w_last, or w_j ==
    w_last and j <= id_last}. The forward finds it with ``nucleus``; the backward passes it
    back in and so never sorts again.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    scaled = logits.to(dtype) / temperature if temperature != 1.0 else logits.to(dtype)   # (R, V)
    if top_p < 1.0:
        # The sampler's weights, bit for bit: float32 softmax of logits.float() / T.
        weights = (logits.float() / temperature).softmax(-1)                 # (R, V)
        if boundary is None:
            kept, ids = nucleus(weights, top_p)                              # (R, K)
            last = ((kept > 0).sum(-1, keepdim=True) - 1).clamp(min=0)       # (R, 1) position
            boundary = (kept.gather(1, last)[:, 0], ids.gather(1, last)[:, 0])
            del kept, ids
        w_last, id_last = boundary
        vocab = torch.arange(weights.shape[-1], device=weights.device)
        keep = (weights > w_last[:, None]) | ((weights == w_last[:, None]) & (vocab <= id_last[:, None]))
        # The sampled token is always in: a boundary token that float drift between decoding
        # and teacher forcing moved out gets a finite log-prob, not -inf.
        keep.scatter_(1, tokens[:, None], True)
        del weights
        scaled = scaled.masked_fill(~keep, float("-inf"))
    normaliser = torch.logsumexp(scaled, dim=-1)                             # (R,)
    logprobs = scaled.gather(1, tokens[:, None])[:, 0] - normaliser          # (R,)
    if not (entropy or probs):
        return logprobs, None, None, boundary
    p = torch.exp(scaled - normaliser[:, None])                              # (R, V), 0 off the nucleus
    h = normaliser - (p * scaled.masked_fill(p == 0, 0.0)).sum(-1) if entropy else None
    return logprobs, h, (p if probs else None), boundary


def _blocks(batch: int, steps: int, rows: int):
    """(batch slice, step slice) blocks of about ``rows`` positions each, covering (B, T).

    Blocks are cut from the (B, T, V) tensor itself, not from a (B*T, V) reshape: the logits of
    a completion are usually a strided slice of the model's output, which cannot be flattened
    without copying all of it.
    """
    if rows >= steps:
        per = max(1, rows // steps)
        for b in range(0, batch, per):
            yield slice(b, b + per), slice(0, steps)
    else:
        for b in range(batch):
            for t in range(0, steps, rows):
                yield slice(b, b + 1), slice(t, t + rows)


class _SampledLogprobs(torch.autograd.Function):
    """Chunked forward; the backward recomputes p~ per chunk: grad z = g (onehot(y) - p~) / T."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, top_p, rows, with_entropy):
        batch, steps, width = logits.shape
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logprobs = torch.empty(tokens.shape, dtype=dtype, device=logits.device)            # (B, T)
        entropy = torch.zeros(tokens.shape if with_entropy else (0,), dtype=dtype, device=logits.device)
        boundaries = []                                                      # per block, (R,) x 2
        for bs, ts in _blocks(batch, steps, rows):
            z, y = logits[bs, ts].reshape(-1, width), tokens[bs, ts].reshape(-1)           # (R, V), (R,)
            lp, h, _, boundary = _chunk(z, y, temperature, top_p, with_entropy, False)
            boundaries.append(boundary)
            logprobs[bs, ts] = lp.view(tokens[bs, ts].shape)
            if with_entropy:
                entropy[bs, ts] = h.view(tokens[bs, ts].shape)
        ctx.save_for_backward(logits, tokens)
        ctx.settings = (temperature, top_p, rows, boundaries)
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        logits, tokens = ctx.saved_tensors
        temperature, top_p, rows, boundaries = ctx.settings
        batch, steps, width = logits.shape
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)         # (B, T, V)
        for (bs, ts), boundary in zip(_blocks(batch, steps, rows), boundaries):
            z, y = logits[bs, ts].reshape(-1, width), tokens[bs, ts].reshape(-1)
            _, _, p, _ = _chunk(z, y, temperature, top_p, False, True, boundary)            # (R, V)
            g = grad_logprobs[bs, ts].reshape(-1, 1).to(p.dtype)                           # (R, 1)
            chunk_grad = (-p * g).scatter_add_(1, y[:, None], g)                           # g (onehot - p~)
            grad[bs, ts] = (chunk_grad / temperature).to(grad.dtype).view(*tokens[bs, ts].shape, width)
        return grad, None, None, None, None, None


def _check(logits: Tensor, tokens: Tensor, temperature: float, top_p: float) -> None:
    if logits.dim() != 3 or logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} disagree")
    if not temperature > 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature > 0 (greedy has no distribution to differentiate) "
                         f"and 0 < top_p <= 1, got {temperature}, {top_p}")


def _rows(width: int, chunk_rows: int | None) -> int:
    return chunk_rows if chunk_rows else max(1, CHUNK_ELEMENTS // width)


def sampled_logprobs(logits: Tensor, tokens: Tensor, temperature: float, top_p: float = 1.0, *,
                     chunk_rows: int | None = None) -> Tensor:
    """log p~(tokens) (B, T) under softmax(logits / temperature) truncated to the top-p nucleus.

    logits: (B, T, V), any float dtype, with grad; tokens: (B, T) long. The result is in
    float32 (float64 for float64 logits) and differentiable w.r.t. the logits; no (B, T, V)
    float copy is made, so pass the model's logits (or a slice of them) as they are. Padding
    positions get a value like any other: mask them. ``chunk_rows`` positions at a time.
    """
    _check(logits, tokens, temperature, top_p)
    rows = _rows(logits.shape[-1], chunk_rows)
    logprobs, _ = _SampledLogprobs.apply(logits, tokens, float(temperature), float(top_p), rows, False)
    return logprobs


def sampled_logprobs_and_entropy(logits: Tensor, tokens: Tensor, temperature: float,
                                 top_p: float = 1.0, *, chunk_rows: int | None = None
                                 ) -> tuple[Tensor, Tensor]:
    """(log p~(tokens) (B, T) with grad, H(p~) (B, T) detached) in one chunked pass.

    The entropy is that of the same truncated, tempered distribution (a diagnostic: no grad).
    """
    _check(logits, tokens, temperature, top_p)
    rows = _rows(logits.shape[-1], chunk_rows)
    return _SampledLogprobs.apply(logits, tokens, float(temperature), float(top_p), rows, True)
