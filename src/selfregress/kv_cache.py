"""A preallocated KV cache for ``sampling.sample``: one slot written per step, no re-concatenation.

``DynamicCache`` copies O(length) per layer per step; here plain attention layers write into
buffers sized for the whole completion. Special layers (sliding window, linear attention) and
transformers versions without the layered cache API keep the stock ``DynamicCache``.
"""

from __future__ import annotations

import inspect


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
# Model classes whose ``forward`` is exactly: embed -> rotary -> decoder layers (one causal mask)
# -> final norm -> lm_head; read from transformers 5.x modeling_qwen2.py.
_DIRECT_CLASSES = ("Qwen2ForCausalLM",)


def direct_decode_step(model):
    """A function (tokens (b, 1), attention (b, L), positions (b, 1), cache) -> logits (b, V),
    bit-identical to ``model(...)`` on one new token, or None where that is not guaranteed.

    At a hidden size of 128 the model-level wrappers of ``forward`` (output capturing, config
    defaults, kwarg deprecation and above all ``create_causal_mask``) cost about as much as the
    decoder layers themselves. This calls the same submodules with the same arguments, and
    builds the mask as ``create_causal_mask`` does for SDPA and one query token: None when no
    position is padded (SDPA's own path for that case), else the padding mask as a
    (b, 1, 1, L) bool (a single query attends every cached position, so the causal part is
    all True). Only for the classes checked by ``tests/policy/test_sampling.py`` with SDPA
    and full attention in every layer; anything else (LoRA wrappers, sliding windows, eager
    attention) returns None and keeps ``model(...)``.
    """
    config = model.config
    if (type(model).__name__ not in _DIRECT_CLASSES or config._attn_implementation != "sdpa"
            or any(kind != "full_attention" for kind in getattr(config, "layer_types", ["?"]))):
        return None
    inner, argument = model.model, _cache_argument(model)
    layers = inner.layers[:config.num_hidden_layers]

    def step(tokens, attention, positions, cache):
        mask = None if bool(attention.all()) else attention[:, None, None, :].bool()
        hidden = inner.embed_tokens(tokens)                                     # (b, 1, H)
        position_embeddings = inner.rotary_emb(hidden, positions)
        for layer in layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings,
                           position_ids=positions, use_cache=True, **{argument: cache})
        return model.lm_head(inner.norm(hidden))[:, -1]                          # (b, V)

    return step
