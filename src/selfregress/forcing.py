"""Teacher forcing: the log-probs of given completions, with grad, for the loss, the KL and EWC.

``completion_logprobs`` runs the model over prompt + completion and scores each completion token
under the distribution the sampler drew from (``logprobs.sampled_logprobs``). A step's rows
come in groups that share a prompt (G samples of each of N prompts), and the prompt is about
half of every row's tokens on the testbed; so each *distinct* prompt goes through the model
once, with a KV cache, and its keys and values are then gathered to the rows that answer it,
before the completions go through. That is the same function of the weights as one pass over
the repeated rows (attention reads the same keys and values; the gather's backward sums the
rows' gradients into the prompt's), with 1/G of the prompt's work, forward and backward: on
the default step (16 prompts x 4 samples) a quarter of the work is gone. Only the order of
float sums differs, so log-probs agree with the one-pass form to ~1e-6
(``tests/policy/test_forcing.py``, which checks gradients too).

``samples`` is a ``sampling.Samples`` (not imported: sampling imports this module). Notation as
in ``sampling``: B rows, P prompt tokens (left-padded), T completion tokens
(right-padded), V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfregress.kv_cache import _accepts, _cache_argument
from selfregress.logprobs import sampled_logprobs, sampled_logprobs_and_entropy


def positions_from_mask(mask: Tensor) -> Tensor:
    """(B, L) -> (B, L) position ids that start at 0 on each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def completion_logprobs(model, samples, *, temperature: float = 1.0, top_p: float = 1.0,
                        entropy: bool = True, share_prompts: bool = True) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced (logprobs (B, T), entropy (B, T) | None) of each completion token.

    logprobs[i, t] = log p~(y_it | prompt, y_i<t), with grad, where p~ is the distribution the
    sampler draws from: softmax(logits / temperature) restricted to the top-p nucleus and
    renormalised (``logprobs.sampled_logprobs``; the sampler keeps the same nucleus,
    ``logprobs.nucleus``). This is what the policy-gradient loss, the KL and the Fisher
    differentiate. entropy[i, t] = H(p~) of the same distribution, detached (a diagnostic), or
    None with ``entropy=False``. Both are 0 where completion_mask is 0. At the sampling settings
    this recomputes ``samples.logprobs`` up to float error, provided dropout is off (``model.eval()``
    still lets grads flow). The start policy's log-probs for the KL use top_p = 1: its own
    nucleus may not hold a token the policy drew, and the KL would be infinite. Micro-batch with
    ``samples.select`` when (B, T, V) logits do not fit. ``share_prompts=False``: one pass over
    the repeated rows (the reference the tests compare with).
    """
    device = next(model.parameters()).device
    completion_ids = samples.completion_ids.to(device)
    completion_mask = samples.completion_mask.to(device)
    distinct = torch.unique(samples.prompt_index)
    if share_prompts and len(distinct) < len(samples):
        logits = _shared_prompt_logits(model, samples, device)                   # (B, T, V)
    else:
        logits = _one_pass_logits(model, samples, device)
    if not entropy:
        return sampled_logprobs(logits, completion_ids, temperature, top_p) * completion_mask, None
    token_logprobs, entropies = sampled_logprobs_and_entropy(logits, completion_ids, temperature, top_p)
    return token_logprobs * completion_mask, entropies * completion_mask


def _one_pass_logits(model, samples, device) -> Tensor:
    """The logits that predict the T completion tokens, from one pass over every row: (B, T, V)."""
    prompt_ids, completion_ids = samples.prompt_ids.to(device), samples.completion_ids.to(device)
    ids = torch.cat([prompt_ids, completion_ids], dim=1)                        # (B, P + T)
    mask = torch.cat([samples.prompt_mask.to(device), samples.completion_mask.to(device)], dim=1)
    steps = completion_ids.shape[1]
    # Positions P-1 .. P+T-2 predict the T completion tokens: keep only those logits.
    keep = {"logits_to_keep": steps + 1} if _accepts(model, "logits_to_keep") else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                   use_cache=False, **keep).logits
    return logits[:, -steps - 1:-1]                                             # (B, T, V), a view


def _shared_prompt_logits(model, samples, device) -> Tensor:
    """The same logits, each distinct prompt run once: prompt pass (N rows) with a cache, its
    keys/values and last logits gathered to the B rows, then the completions (B rows)."""
    from transformers import DynamicCache

    index = samples.prompt_index.to(device)
    _, inverse = torch.unique(index, return_inverse=True)                      # (B,) row -> distinct prompt
    rows = torch.arange(len(index), device=device)
    first = torch.full((int(inverse.max()) + 1,), len(index), device=device).scatter_reduce(
        0, inverse, rows, "amin")                                               # (N,) a row of each prompt
    prompt_ids, prompt_mask = samples.prompt_ids.to(device), samples.prompt_mask.to(device)
    completion_ids = samples.completion_ids.to(device)
    cache = DynamicCache(config=model.config)
    cache_kwargs = {_cache_argument(model): cache, "use_cache": True}
    last_only = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    out = model(input_ids=prompt_ids[first], attention_mask=prompt_mask[first],
                position_ids=positions_from_mask(prompt_mask[first]), **last_only, **cache_kwargs)
    predicts_first = out.logits[:, -1:][inverse]                                # (B, 1, V)
    steps = completion_ids.shape[1]
    if steps == 1:
        return predicts_first
    for layer in cache.layers:                  # (N, KV, P, D) -> (B, KV, P, D), differentiably
        layer.keys, layer.values = layer.keys[inverse], layer.values[inverse]
    mask = torch.cat([prompt_mask, samples.completion_mask.to(device)], dim=1)  # (B, P + T)
    width = prompt_ids.shape[1]
    # Completion tokens 0 .. T-2 predict tokens 1 .. T-1.
    out = model(input_ids=completion_ids[:, :-1], attention_mask=mask[:, :-1],
                position_ids=positions_from_mask(mask)[:, width:-1], **cache_kwargs)
    return torch.cat([predicts_first, out.logits], dim=1)                       # (B, T, V)
