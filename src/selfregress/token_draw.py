"""One token per row: temperature, top-p (nucleus) and an inverse-CDF draw from given uniforms.

Pure tensor maths for ``sampling.sample``: the draw depends only on the logits and the uniforms,
so the samples depend on the seed and not on how the batch is laid out. The nucleus is
``logprobs.nucleus``, the very rule ``logprobs.sampled_logprobs`` scores with (ties in
token-id order), so the loss differentiates the distribution that was sampled.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfregress.logprobs import nucleus


def sample_tokens(logits: Tensor, uniforms: Tensor, *, temperature: float, top_p: float = 1.0,
                  banned: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Draw one token per row and return (tokens (B,), logprobs (B,)).

    logits: (B, V); uniforms: (B,) in [0, 1), one per row. Inverse-CDF sampling: the token is
    the first whose cumulative weight exceeds u * total weight. ``top_p`` < 1 keeps the top-p
    nucleus (Holtzman et al. 2020) of ``logprobs.nucleus``; ``banned`` (ids) are never drawn.
    Weights need no renormalising for this. The log-prob is that of the distribution drawn
    from, log p~(y) = log(w_y / sum of the kept w) with w = softmax(logits / T): what
    ``completion_logprobs`` recomputes with grad at the same T and top_p. ``banned`` (only
    sampling's ``min_new_tokens`` uses it) is left out of the log-prob at top_p = 1 and is
    removed before the nucleus otherwise. T = 0 is greedy (log-probs at T = 1).
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
        weights, candidates = nucleus(weights, top_p)                        # (B, K), (B, K)
    cumulative = weights.cumsum(-1)                                          # (B, K)
    target = uniforms[:, None].to(cumulative.dtype) * cumulative[:, -1:]    # (B, 1)
    choice = torch.searchsorted(cumulative, target, right=True).clamp_(max=weights.shape[1] - 1)
    drawn_zero = weights.gather(1, choice) <= 0                              # (B, 1)
    if bool(drawn_zero.any()):  # u * total rounded up to total: never return a zero-weight token
        choice = torch.where(drawn_zero, weights.argmax(-1, keepdim=True), choice)
    if candidates is None:
        tokens = choice[:, 0]                                                # (B,)
        # log(softmax) of the drawn token: drawn tokens have p >> 1e-38, so this is as exact as
        # log_softmax and saves a second pass over (B, V).
        return tokens, probs.gather(1, tokens[:, None])[:, 0].log()
    tokens = candidates.gather(1, choice)[:, 0]                              # (B,)
    return tokens, (weights.gather(1, choice)[:, 0] / cumulative[:, -1]).log()
