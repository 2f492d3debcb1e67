"""One token per row: temperature, top-p (nucleus) and an inverse-CDF draw from given uniforms.

Pure tensor maths for ``sampling.sample``: the draw depends only on the logits and the uniforms,
so the samples depend on the seed and not on how the batch is laid out.
"""

from __future__ import annotations

import torch
from torch import Tensor

# top-p looks for the nucleus among this many most likely tokens first: a full sort of a
# (256, 1000) batch costs ~16 ms on CPU, top-64 ~3 ms; it falls back to the sort when needed.
NUCLEUS_CANDIDATES = 64


def sample_tokens(logits: Tensor, uniforms: Tensor, *, temperature: float, top_p: float = 1.0,
                  banned: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Draw one token per row and return (tokens (B,), logprobs (B,)).

    logits: (B, V); uniforms: (B,) in [0, 1), one per row. Inverse-CDF sampling: the token is
    the first whose cumulative weight exceeds u * total weight. ``top_p`` < 1 keeps the
    smallest set of most likely tokens whose probability reaches top_p (Holtzman et al. 2020);
    ``banned`` (ids) are never drawn. Weights need no renormalising for this.
    The log-prob is that of the tempered model, log softmax(logits / T), *before* top-p and
    ``banned``: what ``completion_logprobs`` recomputes with grad. T = 0 is greedy (log-probs at T = 1).
    """
    logits = logits.float()
    if temperature == 0:
        chosen = logits if banned is None else logits.index_fill(1, banned, float("-inf"))
        tokens = chosen.argmax(-1)                                           # (B,)
        return tokens, logits.log_softmax(-1).gather(1, tokens[:, None])[:, 0]
    if temperature != 1.0:
        logits = logits / temperature
    probs = logits.softmax(-1)                                               # (B, V)
    weights = probs if banned is None else probs.index_fill(1, banned, 0.0)
    candidates = None
    if top_p < 1.0:
        weights, candidates = _nucleus(weights, top_p)                       # (B, K), (B, K)
    cumulative = weights.cumsum(-1)                                          # (B, K)
    target = uniforms[:, None].to(cumulative.dtype) * cumulative[:, -1:]    # (B, 1)
    choice = torch.searchsorted(cumulative, target, right=True).clamp_(max=weights.shape[1] - 1)
    drawn_zero = weights.gather(1, choice) <= 0                              # (B, 1)
    if bool(drawn_zero.any()):  # u * total rounded up to total: never return a zero-weight token
        choice = torch.where(drawn_zero, weights.argmax(-1, keepdim=True), choice)
    tokens = (choice if candidates is None else candidates.gather(1, choice))[:, 0]   # (B,)
    # log(softmax) of the drawn token: drawn tokens have p >> 1e-38, so this is as exact as
    # log_softmax and saves a second pass over (B, V).
    return tokens, probs.gather(1, tokens[:, None])[:, 0].log()


def _nucleus(weights: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """(B, V) weights -> (B, K) weights of the top-p nucleus (others 0) and their token ids."""
    total = weights.sum(-1, keepdim=True)                                    # (B, 1)
    k = min(NUCLEUS_CANDIDATES, weights.shape[-1])
    top, ids = weights.topk(k, dim=-1)                                       # (B, K), descending
    if k < weights.shape[-1] and bool((top.sum(-1, keepdim=True) < top_p * total).any()):
        top, ids = weights.sort(-1, descending=True)                         # the nucleus is wider
    before = top.cumsum(-1) - top                                            # mass of likelier tokens
    return top.masked_fill(before >= top_p * total, 0.0), ids


# ---- KV cache --------------------------------------------------------------------------------
