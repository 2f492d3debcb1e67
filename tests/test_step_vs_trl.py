"""benchmarks/step_vs_trl.py runs both sides end to end and both update the model (needs the bench extra)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("step_vs_trl", ROOT / "benchmarks" / "step_vs_trl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_sides_step_and_change_the_model(tmp_path, capsys):
    bench = load_benchmark()
    model = tmp_path / "model"
    bench.build_random_base(model)   # seconds, where the SFT'd base takes minutes

    # A random model never passes a test, so every grader reward is 0 and every GRPO advantage
    # with it. This stand-in gives one of each prompt's two samples 1 and the other 0 (both
    # sides keep a prompt's samples adjacent): every advantage is +-1, whatever the samples.
    def alternating(pairs):
        return [float(i % 2) for i in range(len(pairs))]

    result = bench.main(["--model", str(model), "--steps", "1", "--warmup", "0", "--prompts", "2",
                         "--samples", "2", "--max-new-tokens", "8", "--repeats", "2"], score=alternating)
    out = capsys.readouterr().out
    # interleaved: each repetition ran both sides, and the ratio is the median of the two
    assert out.index("repetition 1: ours") < out.index("repetition 2: ours")
    assert len(result["ratios"]) == 2
    assert result["ratio"] == sum(result["ratios"]) / 2
    assert "ratio TRL/ours: median" in out
    assert result["ours"]["delta"] > 0
    assert result["trl"]["delta"] > 0
    assert result["ours"]["reward"] == result["trl"]["reward"] == 0.5
