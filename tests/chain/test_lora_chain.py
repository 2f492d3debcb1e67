"""Tiny chains under LoRA (lora_rank > 0) and bf16 autocast, against a real store, grader and model.

Asserts what issue #18 asks of LoRA: every checkpoint is an adapter folder (a few tens of KB,
no full weights) naming the chain's pinned base; only the adapters train (the base's weights
are bit-equal after training); ES restarts from an adapter peak; a checkpoint read back gives
the pass@1 the chain logged for it; and a bf16 chain runs with finite numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft", reason="peft is not installed: pip install -c constraints.txt peft")

from selfregress import lora  # noqa: E402
from selfregress import metric_keys as K  # noqa: E402
from selfregress.campaign import EVAL, Plan, campaign_policy, train_campaign  # noqa: E402
from selfregress.chain import run_chain  # noqa: E402
from selfregress.chain_config import ChainConfig  # noqa: E402
from selfregress.config import parse  # noqa: E402
from selfregress.controllers import Decision  # noqa: E402
from selfregress.distributed import SINGLE  # noqa: E402
from selfregress.records import campaign_records, split_tasks  # noqa: E402
from selfregress.step import StepTimes, evaluate_step, step_seed  # noqa: E402
from selfregress.tracking import download_model  # noqa: E402

from .conftest import TINY_CHAIN  # noqa: E402

LORA = dict(lora_rank=4, lora_alpha=8.0)


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def tiny_config(model: str, **overrides) -> ChainConfig:
    return parse(ChainConfig, {**TINY_CHAIN, "model": model, **overrides})


@pytest.mark.parametrize("condition", ["naive", "kl", "es"])
def test_lora_chain_logs_adapter_checkpoints(condition, mlflow_store, grader_pool, tiny_base):
    config = tiny_config(tiny_base, condition=condition, seed=1, **LORA)
    records = campaign_records(mlflow_store, run_chain(config, mlflow_store, grader_pool, tiny_base,
                                                       log=lambda m: None))
    assert [r.index for r in records] == [0, 1]
    base_bytes = (Path(tiny_base) / "model.safetensors").stat().st_size
    for record in records:
        assert sorted(record.checkpoints) == list(range(record.last_step + 1))   # checkpoints=all
        for model_id in record.checkpoints.values():
            folder = Path(download_model(f"models:/{model_id}"))
            assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
            assert json.loads((folder / lora.BASE_FILE).read_text()) == {"base": tiny_base}   # the pinned base
            written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            assert written < 100_000 < base_bytes                      # rank 4 on 2 layers: ~40 KB
        if condition == "kl":
            kl = mlflow_store.metric_history(record.run_id, K.TRAIN_KL_TO_START)
            assert abs(kl[1]) < 1e-4                                    # step 1 samples the start itself
            # B = 0 gets no gradient from a batch without a success (A's is 0 while B = 0), so
            # the adapter, and its KL to the start, moves only after a rewarded step
            moved = mlflow_store.metric_history(record.run_id, K.TRAIN_REWARD_MEAN)[1] > 0
            assert kl[2] > 0 if moved or record.index == 1 else kl[2] == 0, (kl, moved)
        start = lora_weights(record.checkpoints[0])
        end = lora_weights(record.checkpoints[record.last_step])
        assert start.keys() == end.keys() and any(not torch.equal(start[k], end[k]) for k in start)

    # campaign 1 starts from an adapter checkpoint: the last step, or ES's peak
    decision = Decision.from_record(records[0])
    assert records[1].start_model == decision.next_start_model
    chosen = decision.peak_step if condition == "es" else records[0].last_step
    assert records[1].checkpoints[0] == records[0].checkpoints[chosen]
    # read back, a checkpoint gives the pass@1 the chain logged for it (same seed, same tasks)
    _, eval_tasks = split_tasks(config)
    record = records[1]
    policy = campaign_policy(config, f"models:/{record.checkpoints[record.last_step]}")
    again = evaluate_step(policy, eval_tasks, grader_pool, samples=config.eval_samples,
                          temperature=config.temperature, top_p=config.top_p,
                          max_new_tokens=config.max_new_tokens, times=StepTimes(),
                          seed=step_seed(config.seed, record.index, record.last_step, EVAL))
    assert again[K.PASS_AT_1] == record.pass_at_1[-1]
    assert again[K.EVAL_SUCCESSES] == record.successes[-1]


def lora_weights(model_id: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(download_model(f"models:/{model_id}")) / lora.ADAPTER_WEIGHTS))


@pytest.mark.parametrize("condition", ["kl", "ewc"])
def test_only_the_adapters_train(condition, grader_pool, tiny_base):
    """In memory, after two steps: the base's weights bit-equal, the adapters moved, and AdamW
    held the adapters only. kl reads the base with the adapters off; ewc anchors the adapters."""
    config = tiny_config(tiny_base, condition=condition, seed=2, **LORA)
    rl_tasks, eval_tasks = split_tasks(config)
    policy = campaign_policy(config, tiny_base)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable)
    assert lora.is_fresh(policy.adapter)
    train_campaign(config, policy, grader_pool, 0, Plan(tiny_base, 2, 1.0), rl_tasks, eval_tasks, SINGLE, log=None)
    after = dict(policy.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    assert any(not torch.equal(before[n], after[n]) for n in trainable)
    assert not lora.is_fresh(policy.adapter)


def test_kl_reference_is_the_start_adapter_after_a_restart(grader_pool, tiny_base, tmp_path):
    """A campaign that starts from a trained adapter keeps a frozen copy of it as the KL
    reference (not the base): the first step samples the start itself, so its KL is ~0."""
    from selfregress.step import start_reference
    from selfregress.forcing import completion_logprobs
    from selfregress.sampling import sample

    config = tiny_config(tiny_base, condition="kl", seed=2, **LORA)
    policy = campaign_policy(config, tiny_base)
    with torch.no_grad():
        for p in lora.trainable_parameters(policy.model):
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    policy.save(tmp_path / "adapter")
    restarted = campaign_policy(config, str(tmp_path / "adapter"))
    assert restarted.adapter is not None and restarted.base_ref == tiny_base
    reference = start_reference(restarted)
    samples = sample(restarted, ["# Problem\nPrint 1.\n# Solution\n"], n=2, temperature=1.0,
                     max_new_tokens=16, seed=0)
    with torch.no_grad():
        ours, _ = completion_logprobs(restarted.model, samples, entropy=False)
        with reference.active():
            start, _ = completion_logprobs(reference.model, samples, entropy=False)
        with lora.base_model_off(restarted.adapter):
            base, _ = completion_logprobs(restarted.model, samples, entropy=False)
    assert torch.equal(ours, start) and not torch.equal(ours, base)
    assert all(".default." in n for n, p in restarted.model.named_parameters() if p.requires_grad)


def test_bf16_chain_runs_with_finite_numbers(mlflow_store, grader_pool, tiny_base):
    """dtype=bf16: autocast around the forward passes on the CPU, fp32 weights and optimizer."""
    config = tiny_config(tiny_base, condition="kl", seed=4, campaigns=1, dtype="bf16", **LORA)
    records = campaign_records(mlflow_store, run_chain(config, mlflow_store, grader_pool, tiny_base,
                                                       log=lambda m: None))
    curve = records[0].pass_at_1
    assert len(curve) == 3 and all(math.isfinite(v) and 0 <= v <= 1 for v in curve)
    for key in (K.TRAIN_LOSS, K.TRAIN_GRAD_NORM, K.TRAIN_ENTROPY, K.TRAIN_KL_TO_START):
        assert all(math.isfinite(v) for v in mlflow_store.metric_history(records[0].run_id, key).values()), key
    weights = lora_weights(records[0].checkpoints[2])
    assert all(w.dtype == torch.float32 for w in weights.values())


def test_adapter_checkpoint_evaluates_and_serves(mlflow_store, tiny_base, tmp_path):
    """`evaluate --model <adapter>` loads base + adapter; the champion's pyfunc is the adapter
    merged into its base: a plain folder with the same logits up to float rounding."""
    from selfregress.policy import load_policy
    from selfregress.serving import CHECKPOINT, save_servable

    from .conftest import cli

    config = tiny_config(tiny_base, **LORA)
    policy = campaign_policy(config, tiny_base)
    with torch.no_grad():
        for p in lora.trainable_parameters(policy.model):
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    policy.save(tmp_path / "adapter")

    result = cli("evaluate", "--model", str(tmp_path / "adapter"), "--eval_tasks", "6", "--eval_samples", "2",
                 "--max_new_tokens", "24", "--workers", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "pass_at_1:" in result.stdout

    served = save_servable(tmp_path / "adapter", tmp_path / "servable")
    weights = next((served / "artifacts").glob(f"{CHECKPOINT}*"))
    assert (weights / "model.safetensors").is_file() and not (weights / "adapter_config.json").exists()
    merged = load_policy(served, device="cpu")
    assert merged.adapter is None
    ids = policy.tokenizer("# Problem\nPrint 1.\n# Solution\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged.model(input_ids=ids).logits, policy.model(input_ids=ids).logits,
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("condition", ["kl", "grpo"])
def test_micro_batches_and_checkpointing_take_the_same_step(condition, grader_pool, tiny_base):
    """micro_batch=4 with grad_checkpointing (the memory options a real model needs) through a real
    campaign step under LoRA: the same samples, so the same adapters after the step up to rounding."""
    after = []
    for memory in ({}, {"micro_batch": 4, "grad_checkpointing": True}):
        config = tiny_config(tiny_base, condition=condition, seed=3, batch_size=8, group_size=4, **LORA, **memory)
        rl_tasks, eval_tasks = split_tasks(config)
        torch.manual_seed(len(after))          # the global generator differs; the adapters' A must not
        policy = campaign_policy(config, tiny_base)
        train_campaign(config, policy, grader_pool, 0, Plan(tiny_base, 1, 1.0), rl_tasks, eval_tasks, SINGLE,
                       log=None)
        after.append({n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad})
    assert after[0].keys() == after[1].keys()
    assert any(float(p.abs().max()) > 0 for n, p in after[0].items() if "lora_B" in n)   # the step moved B
    for name, value in after[0].items():
        torch.testing.assert_close(after[1][name], value, atol=1e-6, rtol=1e-5)
