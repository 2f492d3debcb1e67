"""A LoRA checkpoint of the tiny SFT'd base restores the pass@1 of the model that wrote it."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft", reason="peft is not installed: pip install -c constraints.txt peft")

from selfregress import lora  # noqa: E402


def test_adapter_checkpoint_restores_pass_at_1(tiny_base, tmp_path):
    from grader import Grader
    from selfregress.evaluation import evaluate
    from selfregress.policy import Policy, load_policy
    from selfregress.tasks import synthetic_splits

    tasks = synthetic_splits(seed=0).eval[:16]
    base = load_policy(tiny_base, device="cpu")
    adapted = lora.attach_lora(base.model, rank=4, alpha=8)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():   # stand-in for training: move the adapter off B = 0
        for p in lora.trainable_parameters(adapted):
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    writer = Policy(model=lora.policy_model(adapted), tokenizer=base.tokenizer, device=base.device)
    lora.save_adapter(adapted, tmp_path / "adapter", base_ref=tiny_base)
    restored = load_policy(tmp_path / "adapter", device="cpu")

    settings = dict(samples=2, temperature=1.0, max_new_tokens=64, seed=3)
    with Grader(workers=2) as grader:
        wrote = evaluate(writer, tasks, grader, **settings)
        again = evaluate(restored, tasks, grader, **settings)
        with lora.base_model_off(adapted):
            off = evaluate(writer, tasks, grader, **settings)
    assert wrote.pass_at_1 > 0                      # a pass@1 that could differ
    assert again.programs == wrote.programs
    assert again.pass_at_1 == wrote.pass_at_1 and (again.successes == wrote.successes).all()
    assert off.programs != wrote.programs           # the adapter did change the policy
