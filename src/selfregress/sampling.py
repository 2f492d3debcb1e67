"""Batched sampling with a KV cache (the teacher-forced log-probs are ``forcing.py``).

This is the hot path of every RL step (sample -> grade -> advantages -> loss -> step), so
``sample`` drives the model's ``forward`` in a tight loop instead of ``model.generate``:

- each distinct prompt is prefilled once and its KV cache is expanded ``n`` times;
- the KV cache is preallocated, so a step writes one slot instead of re-concatenating the
  whole cache (``DynamicCache`` copies O(length) per layer per step);
- a token is drawn by inverse-CDF sampling (softmax, cumsum, one uniform per row): on CPU
  ``torch.multinomial`` costs ~9 ms for a (256, 1000) batch, this ~0.5 ms;
- rows that reached EOS are dropped from the batch (and its cache) once enough have ended.

One uniform is drawn per output row per step whatever the batch still holds, so the samples
depend on the seed and the batch (prompts, n), not on when finished rows are dropped. The same
code runs any Hugging Face causal LM on any device (``policy.device``).

Notation: N prompts, n samples per prompt, B = N * n rows, P prompt tokens (left-padded), T
completion tokens (right-padded), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from selfregress.forcing import positions_from_mask
from selfregress.kv_cache import _accepts, _cache_argument, _new_cache, direct_decode_step
from selfregress.token_draw import sample_tokens

if TYPE_CHECKING:
    from selfregress.policy import Policy

# Finished rows are dropped once they are at least this share of the batch (dropping copies the
# KV cache). Measured on 64 x 4 testbed samples (mean 48 of at most 128 tokens), CPU s: never
# 1.33, every finish 1.37, 1/8 1.04, 1/4 1.04, 1/2 1.16.
COMPACT_FRACTION = 0.25


@dataclass
class Samples:
    """One batch of sampled completions; row i answers prompt ``prompt_index[i]`` (= i // n)."""
    prompt_ids: Tensor        # (B, P) long, left-padded
    prompt_mask: Tensor       # (B, P) long, 1 on prompt tokens
    completion_ids: Tensor    # (B, T) long, right-padded
    completion_mask: Tensor   # (B, T) long, 1 up to and including EOS
    logprobs: Tensor          # (B, T) float, sampling-time log p~(y_t | ...) (temperature, nucleus), 0 on padding
    texts: list[str]          # (B,) decoded completions, without EOS
    prompt_index: Tensor      # (B,) long, which input prompt each row came from

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: Tensor | list[int] | slice) -> "Samples":
        """The sub-batch ``rows`` (for micro-batching the loss)."""
        if isinstance(rows, slice):
            rows = list(range(len(self)))[rows]
        rows = torch.as_tensor(rows, dtype=torch.long)
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in picked.items():
            picked[name] = ([value[i] for i in rows.tolist()] if name == "texts"
                            else value[rows.to(value.device)])
        return Samples(**picked)


# ---- tokens ----------------------------------------------------------------------------------
def encode_prompts(tokenizer, prompts: list[str]) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids (N, P) and mask (N, P).

    A chat-templated prompt already carries its special tokens (BOS included), so they are not
    added twice; a plain prompt gets the tokenizer's usual ones, exactly as ``tokenizer(text)``
    gives them in SFT.
    """
    add_special = not getattr(tokenizer, "chat_template", None)
    encoded = tokenizer(list(prompts), add_special_tokens=add_special)["input_ids"]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} is empty after tokenization")
    width = max(len(ids) for ids in encoded)
    prompt_ids = torch.full((len(encoded), width), pad_token_id(tokenizer), dtype=torch.long)
    prompt_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):
        prompt_ids[i, width - len(ids):] = torch.tensor(ids)
        prompt_mask[i, width - len(ids):] = 1
    return prompt_ids, prompt_mask


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids: the tokenizer's, the generation config's, and the chat template's end of turn.

    Chat models often stop on several ids, and a base model prompted through its chat template
    (Qwen2.5 base: EOS <|endoftext|>) ends its answer with the turn marker (<|im_end|>) instead.
    """
    ids = {tokenizer.eos_token_id, end_of_turn_id(tokenizer)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer has no eos_token and the generation config no eos_token_id")
    return sorted(ids)


def end_of_turn_id(tokenizer) -> int | None:
    """The special token the chat template puts right after an assistant message, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "\x00answer\x00"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "question"}, {"role": "assistant", "content": marker}],
            tokenize=False)
    except Exception:  # templates may reject this conversation; then there is nothing to add
        return None
    after = text.split(marker, 1)[1] if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {
        i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special}
    return ids[0] if ids and ids[0] in special else None


def pad_token_id(tokenizer) -> int:
    """Padding is always masked, so any id works; Llama-style tokenizers have no pad token."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


# ---- many tokens -----------------------------------------------------------------------------
def sample(policy: "Policy", prompts: list[str], *, n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 128, min_new_tokens: int = 0,
           seed: int | None = None, generator: torch.Generator | None = None,
           on_finished: Callable[[list[int], list[str]], None] | None = None) -> Samples:
    """``n`` completions of each prompt, rows grouped by prompt (row i answers prompt i // n).

    Stops a row at EOS (``stop_token_ids``) or after ``max_new_tokens``; EOS is suppressed
    for the first ``min_new_tokens``. ``temperature`` 0 is greedy. Deterministic for a
    ``seed`` (or a caller's ``generator`` on ``policy.device``) on a given device; with
    neither, torch's global RNG is used. The model is run in eval mode (no dropout).

    ``on_finished(rows, texts)`` gets each output row and its ``Samples.texts`` text once, as it ends.
    """
    if not prompts:
        raise ValueError("sample() needs at least one prompt")
    if n < 1 or max_new_tokens < 1 or not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(f"need n >= 1 and 0 <= min_new_tokens <= max_new_tokens >= 1, got n={n}, "
                         f"min_new_tokens={min_new_tokens}, max_new_tokens={max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    model, tokenizer, device = policy.model, policy.tokenizer, torch.device(policy.device)
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)

    prompt_ids, prompt_mask = (t.to(device) for t in encode_prompts(tokenizer, prompts))  # (N, P)
    n_prompts, width = prompt_ids.shape
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and width + max_new_tokens > limit:
        raise ValueError(f"prompt of {width} tokens + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's {limit} positions: shorten the prompt or lower max_new_tokens")
    stops = torch.tensor(stop_token_ids(model, tokenizer), device=device)
    pad = pad_token_id(tokenizer)
    report = None if on_finished is None else (  # (rows, completion ids, lengths) -> on_finished
        lambda rows, ids, lengths: on_finished(rows, _texts(tokenizer, ids[rows], lengths[rows], stops)))

    was_training = model.training
    model.eval()
    try:
        # inference_mode skips autograd bookkeeping (~10% of a tiny model's step); its tensors
        # cannot enter a graph, so the results are cloned out of it for completion_logprobs.
        with torch.inference_mode():
            decoded = _decode(model, prompt_ids, prompt_mask, n=n, temperature=temperature,
                              top_p=top_p, max_new_tokens=max_new_tokens,
                              min_new_tokens=min_new_tokens, stops=stops, pad=pad,
                              generator=generator, report=report)
    finally:
        model.train(was_training)
    completion_ids, logprobs, lengths = (t.clone() for t in decoded)

    steps = torch.arange(completion_ids.shape[1], device=device)
    completion_mask = (steps[None, :] < lengths[:, None]).long()                # (B, T)
    texts = _texts(tokenizer, completion_ids, lengths, stops)
    return Samples(
        prompt_ids=prompt_ids.repeat_interleave(n, dim=0),
        prompt_mask=prompt_mask.repeat_interleave(n, dim=0),
        completion_ids=completion_ids, completion_mask=completion_mask,
        logprobs=logprobs * completion_mask, texts=texts,
        prompt_index=torch.arange(n_prompts, device=device).repeat_interleave(n))


def _texts(tokenizer, completion_ids: Tensor, lengths: Tensor, stops: Tensor) -> list[str]:
    """(b, T) ids and (b,) lengths -> the b decoded completions, without the final EOS."""
    ended = torch.isin(completion_ids.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0], stops)
    text_lengths = (lengths - ended.long()).tolist()                           # drop the EOS
    return tokenizer.batch_decode([row[:k] for row, k in zip(completion_ids.tolist(), text_lengths)],
                                  skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _decode(model, prompt_ids: Tensor, prompt_mask: Tensor, *, n: int, temperature: float,
            top_p: float, max_new_tokens: int, min_new_tokens: int, stops: Tensor, pad: int,
            generator: torch.Generator | None, report=None) -> tuple[Tensor, Tensor, Tensor]:
    """The decode loop -> completion ids (B, T), log-probs (B, T), lengths (B,), T <= max_new_tokens;
    ``report(rows, completion_ids, lengths)`` gets each step's newly finished output rows."""
    device = prompt_ids.device
    n_prompts, width = prompt_ids.shape
    total = n_prompts * n
    cache = _new_cache(model, capacity=width + max_new_tokens)
    cache_kwargs = {_cache_argument(model): cache, "use_cache": True}

    # Prefill each distinct prompt once; only the last position's logits are needed.
    positions = positions_from_mask(prompt_mask)                               # (N, P)
    last_only = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                **last_only, **cache_kwargs)
    logits = out.logits[:, -1].repeat_interleave(n, dim=0)                     # (B, V)
    cache.batch_repeat_interleave(n)
    attention = torch.ones(total, width + max_new_tokens, dtype=prompt_mask.dtype, device=device)
    attention[:, :width] = prompt_mask.repeat_interleave(n, dim=0)             # (B, P + max_new)
    next_position = positions[:, -1].repeat_interleave(n) + 1                  # (B,)

    completion_ids = torch.full((total, max_new_tokens), pad, dtype=torch.long, device=device)
    logprobs = torch.zeros(total, max_new_tokens, device=device)
    lengths = torch.full((total,), max_new_tokens, dtype=torch.long, device=device)
    rows = torch.arange(total, device=device)          # output row of each batch row
    finished = torch.zeros(total, dtype=torch.bool, device=device)   # per batch row
    steps = max_new_tokens
    direct = direct_decode_step(model)                 # None: every step goes through model(...)
    for t in range(max_new_tokens):
        uniforms = torch.rand(total, generator=generator, device=device)[rows]  # (b,)
        tokens, token_logprobs = sample_tokens(
            logits, uniforms, temperature=temperature, top_p=top_p,
            banned=stops if t < min_new_tokens else None)
        tokens = tokens.masked_fill(finished, pad)                              # (b,)
        completion_ids[rows, t] = tokens
        logprobs[rows, t] = token_logprobs.masked_fill(finished, 0.0)
        newly_finished = torch.isin(tokens, stops) & ~finished
        lengths[rows[newly_finished]] = t + 1
        finished |= newly_finished
        n_finished = int(finished.sum())
        if report is not None and bool(newly_finished.any()):
            report(rows[newly_finished].tolist(), completion_ids, lengths)
        if n_finished == len(rows):
            steps = t + 1
            break
        if t == max_new_tokens - 1:
            if report is not None and n_finished < len(rows):
                report(rows[~finished].tolist(), completion_ids, lengths)
            break
        if n_finished >= max(1, COMPACT_FRACTION * len(rows)):
            keep = (~finished).nonzero()[:, 0]                                  # (b',)
            cache.batch_select_indices(keep)
            rows, tokens, finished = rows[keep], tokens[keep], finished[keep]
            next_position, attention = next_position[keep], attention[keep]
        logits = (direct(tokens[:, None], attention, next_position[:, None], cache)
                  if direct is not None else  # (b, V)
                  model(input_ids=tokens[:, None], attention_mask=attention[:, :width + t + 1],
                        position_ids=next_position[:, None], **cache_kwargs).logits[:, -1])
        next_position = next_position + 1
    return completion_ids[:, :steps], logprobs[:, :steps], lengths.clamp(max=steps)
