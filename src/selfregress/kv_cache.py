"""A preallocated KV cache for ``sampling.sample``: one slot written per step, no re-concatenation.

``DynamicCache`` copies O(length) per layer per step; here plain attention layers write into
buffers sized for the whole completion. Special layers (sliding window, linear attention) and
transformers versions without the layered cache API keep the stock ``DynamicCache``.
"""

from __future__ import annotations

import inspect

import torch


def _accepts(model, argument: str) -> bool:
    return argument in inspect.signature(model.forward).parameters


def _cache_argument(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; pass whichever forward takes."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


def _new_cache(model, capacity: int):
    """A DynamicCache whose plain attention layers write into preallocated buffers.

    Sliding-window, linear-attention and other special layers (and transformers versions
    without the layered cache API) keep the stock DynamicCache: slower, same results.
    """
    from transformers import DynamicCache

    try:
        from transformers.cache_utils import DynamicLayer
        cache = DynamicCache(config=model.config)
    except (ImportError, TypeError):
        return DynamicCache()
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_make_preallocated_layer(DynamicLayer, capacity) for _ in cache.layers]
    return cache


def _make_preallocated_layer(base: type, capacity: int):
    class PreallocatedLayer(base):
        """Keys/values (B, H, capacity, D) filled left to right; ``keys`` views the filled part."""

        def __init__(self):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def lazy_initialization(self, key_states, value_states):
            batch, heads, _, _ = key_states.shape
            self.device = key_states.device
            self.key_buffer = key_states.new_zeros(batch, heads, self.capacity, key_states.shape[-1])
            self.value_buffer = value_states.new_zeros(batch, heads, self.capacity, value_states.shape[-1])
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, self.length = self.length, self.length + key_states.shape[-2]
            if self.length > self.capacity:
                raise RuntimeError(f"KV cache overflow: {self.length} > {self.capacity} slots")
            self.key_buffer[:, :, start:self.length] = key_states
            self.value_buffer[:, :, start:self.length] = value_states
            self.keys = self.key_buffer[:, :, :self.length]                   # (B, H, L, D) view
            self.values = self.value_buffer[:, :, :self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:
                self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
                self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
                self.keys, self.values = (self.key_buffer[:, :, :self.length],
                                          self.value_buffer[:, :, :self.length])

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:
                # Copy only the filled slots: the new buffers keep the capacity, not the garbage.
                for name in ("key_buffer", "value_buffer"):
                    old = getattr(self, name)
                    new = old.new_empty(len(indices), *old.shape[1:])
                    new[:, :, :self.length] = old[indices, :, :self.length]
                    setattr(self, name, new)
                self.keys, self.values = (self.key_buffer[:, :, :self.length],
                                          self.value_buffer[:, :, :self.length])

    return PreallocatedLayer()


# ---- one decode step without the model-level wrappers ------------------------------------------
# Model classes whose ``forward`` is exactly: embed -> rotary -> decoder layers (pre-norm
# attention and MLP, each added to the residual) -> final norm -> lm_head; read from
# transformers 5.x modeling_qwen2.py and modeling_llama.py.
_DIRECT_CLASSES = ("Qwen2ForCausalLM", "LlamaForCausalLM")


def direct_decode_step(model):
    """A function (tokens (b, 1), attention (b, capacity), positions (b, 1), cache) -> logits (b, V),
    equal to ``model(...)`` on one new token (attention ``[:, :L]``) up to float rounding, or None where the model is not
    one this was written for.

    At a hidden size of 128 the model-level wrappers of ``forward`` (output capturing, config
    defaults, kwarg deprecation, ``create_causal_mask``) cost about as much as the decoder
    layers, and the attention itself is worse: SDPA's CPU kernel with a padding mask, after
    ``repeat_kv`` has copied the grouped keys and values of the whole cache to every query head,
    cost 10-25 ms per layer for 256 rows of one query each, about a quarter of a chain's CPU
    time. Here one query token attends its cache by two batched matmuls per key/value head
    group: scores (b, KV, G, L) = q (b, KV, G, D) @ k^T (b, KV, D, L) * D^-1/2, the padded
    positions set to -inf, softmax over L, @ v (b, KV, L, D). That is SDPA's formula with the
    same GQA head map as ``repeat_kv`` (query head h reads key/value head h // G); only the
    order of the float sums differs (outputs agree to ~1e-6, ``tests/policy/test_sampling.py``),
    so a sampled token differs from the SDPA path's only when its uniform lands within that
    rounding of a CDF boundary. The padding bias and the rotary cos/sin of every position are
    computed once per decode loop, not per token. Only for the classes above, with full attention in every layer
    and no attention dropout in eval; LoRA wrappers (peft) and anything else keep ``model(...)``.
    """
    config = model.config
    if (type(model).__name__ not in _DIRECT_CLASSES
            or any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or [])
            or getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False)):
        return None
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inner = model.model
    layers = inner.layers[:config.num_hidden_layers]

    def attend(attn, hidden, position_embeddings, bias, cache):
        b = hidden.shape[0]
        heads, dim = config.num_attention_heads, attn.head_dim
        groups = attn.num_key_value_groups
        q = attn.q_proj(hidden).view(b, 1, heads, dim).transpose(1, 2)              # (b, H, 1, D)
        k = attn.k_proj(hidden).view(b, 1, heads // groups, dim).transpose(1, 2)   # (b, KV, 1, D)
        v = attn.v_proj(hidden).view(b, 1, heads // groups, dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        keys, values = cache.update(k, v, attn.layer_idx)                          # (b, KV, L, D)
        scores = torch.matmul(q.reshape(b, heads // groups, groups, dim),
                              keys.transpose(-1, -2)) * attn.scaling               # (b, KV, G, L)
        if bias is not None:
            scores = scores + bias
        out = torch.matmul(scores.softmax(-1, dtype=torch.float32).to(values.dtype), values)
        return attn.o_proj(out.reshape(b, 1, heads * dim))                         # (b, 1, hidden)

    state = {}   # per decode loop: the padding bias and the rotary tables, made once

    def step(tokens, attention, positions, cache):
        """``attention``: (b, capacity) 1 on real positions, the same tensor from step to step
        until the loop drops finished rows (then a new one)."""
        key = (attention.data_ptr(), *attention.shape)
        if state.get("key") != key:          # padded positions get -inf before the softmax
            state["key"] = key
            state["bias"] = None if bool(attention.all()) else torch.zeros(
                attention.shape, dtype=torch.float32, device=attention.device).masked_fill_(
                attention == 0, float("-inf"))[:, None, None, :]                  # (b, 1, 1, capacity)
        hidden = inner.embed_tokens(tokens)                                         # (b, 1, hidden)
        if "rotary" not in state:            # cos, sin of every position the loop can reach
            every = torch.arange(attention.shape[1], device=attention.device)[None]
            state["rotary"] = [t[0] for t in inner.rotary_emb(hidden, every)]      # (capacity, D) each
        position_embeddings = tuple(table[positions] for table in state["rotary"])  # (b, 1, D) each
        length = cache.get_seq_length() + 1
        bias = None if state["bias"] is None else state["bias"][..., :length]
        for layer in layers:
            hidden = hidden + attend(layer.self_attn, layer.input_layernorm(hidden), position_embeddings,
                                     bias, cache)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return model.lm_head(inner.norm(hidden))[:, -1]                              # (b, V)

    return step
