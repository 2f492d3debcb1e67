"""LoRA on the tiny random Qwen2 of conftest.py: what trains, what a checkpoint restores,
what the reference computes, and that the project's sampler runs through the adapters."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft", reason="peft is not installed: pip install -c constraints.txt peft")

from selfregress import lora  # noqa: E402
from selfregress.policy import Policy, load_policy  # noqa: E402
from selfregress.forcing import completion_logprobs  # noqa: E402
from selfregress.sampling import sample  # noqa: E402


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _perturb(adapted, seed: int = 1) -> None:
    """B starts at 0 (the adapted model is the base); move the trained adapter off it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if p.requires_grad:   # the trained adapter, not a frozen start copy
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture
def adapted(qwen):
    return lora.attach_lora(qwen.model, rank=4, alpha=8)


@pytest.fixture
def ids(qwen, prompts):
    return qwen.tokenizer(prompts[1], return_tensors="pt")["input_ids"]            # (1, L)


def test_only_adapter_parameters_get_gradients(adapted, ids):
    trainable, total = lora.count_parameters(adapted)
    names = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    # 2 layers x (q, k, v, o, gate, up, down) x (A, B): 28 matrices; never the head or embeddings.
    assert len(names) == 28 and not any("lm_head" in n or "embed" in n for n in names)
    assert trainable == sum(p.numel() for p in lora.trainable_parameters(adapted)) < total / 5

    adapted(input_ids=ids, labels=ids).loss.backward()
    for name, p in adapted.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    # B = 0 at the start, so A's gradient is 0 too; B's is not.
    assert any(p.grad.abs().sum() > 0 for n, p in adapted.named_parameters() if ".lora_B." in n)


def test_a_fresh_adapter_and_a_disabled_one_give_the_base_logits(qwen_dir, adapted, ids):
    base = load_policy(qwen_dir, device="cpu").model
    assert torch.equal(_logits(adapted, ids), _logits(base, ids))   # B = 0: exactly the base
    _perturb(adapted)
    moved = _logits(adapted, ids)
    assert (moved - _logits(base, ids)).abs().max() > 1e-3
    with lora.base_model_off(adapted):
        assert torch.equal(_logits(lora.policy_model(adapted), ids), _logits(base, ids))
    assert torch.equal(_logits(adapted, ids), moved)                 # back on afterwards


def test_start_adapter_is_a_frozen_copy(adapted, ids):
    _perturb(adapted, seed=1)
    lora.snapshot_start(adapted)
    start = _logits(adapted, ids)
    _perturb(adapted, seed=2)                                        # "training" moves on
    assert not torch.equal(_logits(adapted, ids), start)
    with lora.start_adapter(adapted):
        assert torch.equal(_logits(adapted, ids), start)
    names = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert len(names) == 28 and all(".default." in n for n in names)


def test_adapter_checkpoint_restores_logits_and_samples(qwen, qwen_dir, adapted, ids, prompts, tmp_path):
    _perturb(adapted)
    written = lora.save_adapter(adapted, tmp_path / "ckpt", base_ref=qwen_dir, tokenizer=qwen.tokenizer)
    weights = (tmp_path / "ckpt" / lora.ADAPTER_WEIGHTS).stat().st_size
    # rank 4 on 2 layers: q,o (64->64), k,v (64->32), gate,up (64->128), down (128->64), fp32.
    expected = 4 * 4 * 2 * (2 * (64 + 64) + 2 * (64 + 32) + 2 * (64 + 128) + (128 + 64))
    assert expected < weights < expected + 8192                      # + the safetensors header
    assert written >= weights and not (tmp_path / "ckpt" / "model.safetensors").exists()
    assert lora.adapter_base(tmp_path / "ckpt") == qwen_dir

    restored = load_policy(tmp_path / "ckpt", device="cpu")   # an adapter folder: base + adapter
    assert restored.adapter is not None and restored.base_ref == qwen_dir
    assert not restored.model.training
    assert torch.equal(_logits(restored.model, ids), _logits(adapted, ids))
    writer = Policy(model=lora.policy_model(adapted), tokenizer=qwen.tokenizer, device=qwen.device)
    a = sample(writer, prompts, n=3, temperature=1.0, max_new_tokens=24, seed=7)
    b = sample(restored, prompts, n=3, temperature=1.0, max_new_tokens=24, seed=7)
    assert a.texts == b.texts and torch.equal(a.completion_ids, b.completion_ids)
    assert torch.equal(a.logprobs, b.logprobs)


@pytest.mark.parametrize("wrapper", ["peft", "inner"])
def test_sampler_runs_through_the_adapters(qwen, qwen_dir, adapted, prompts, wrapper):
    """The KV-cached sampler agrees with teacher forcing on the adapted model, whether the
    policy holds the PeftModel or the model inside it, and differs from the base's samples."""
    _perturb(adapted)
    model = adapted if wrapper == "peft" else lora.policy_model(adapted)
    policy = Policy(model=model, tokenizer=qwen.tokenizer, device=qwen.device)
    samples = sample(policy, prompts, n=2, temperature=1.0, max_new_tokens=20, seed=3)
    with torch.no_grad():
        recomputed, _ = completion_logprobs(model, samples)
    torch.testing.assert_close(recomputed, samples.logprobs, atol=1e-4, rtol=0)

    base = sample(load_policy(qwen_dir, device="cpu"), prompts, n=2, temperature=1.0,
                  max_new_tokens=20, seed=3)
    assert not torch.equal(base.logprobs, samples.logprobs)
    with lora.base_model_off(adapted):
        off = sample(policy, prompts, n=2, temperature=1.0, max_new_tokens=20, seed=3)
    assert torch.equal(off.completion_ids, base.completion_ids)
    torch.testing.assert_close(off.logprobs, base.logprobs, atol=1e-6, rtol=0)


def test_bad_rank_is_a_user_error(qwen):
    from selfregress.errors import UserError

    with pytest.raises(UserError, match="lora_rank"):
        lora.attach_lora(qwen.model, rank=0, alpha=8)


def test_attaching_and_loading_adapters_keeps_peft_deprecations_off_the_console(qwen, qwen_dir, tmp_path):
    """peft reads transformers 5's deprecated ``is_gradient_checkpointing``: a FutureWarning on
    every LoRA chain's console that the user can do nothing about."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapted = lora.attach_lora(qwen.model, rank=4, alpha=8)
        lora.save_adapter(adapted, tmp_path / "ckpt", base_ref=qwen_dir, tokenizer=qwen.tokenizer)
        load_policy(tmp_path / "ckpt", device="cpu")
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
