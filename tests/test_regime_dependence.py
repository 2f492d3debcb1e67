"""studies/regime_dependence.py: two bases' report tables beside the paper's, and who beats naive."""

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("regime_dependence", ROOT / "studies" / "regime_dependence.py")
regime_dependence = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regime_dependence)


def _table(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_winner_needs_its_paired_interval_above_zero(tmp_path, capsys):
    rows = [{"condition": "naive", "end_mean": 0.10, "end_low": 0.08, "end_high": 0.12},
            {"condition": "es", "end_mean": 0.20, "end_low": 0.15, "end_high": 0.25, "vs_baseline_mean": 0.10,
             "vs_baseline_low": 0.01, "vs_baseline_high": 0.2, "n_pairs": 5, "improved_baseline": 4},
            {"condition": "care", "end_mean": 0.30, "end_low": 0.0, "end_high": 0.6, "vs_baseline_mean": 0.20,
             "vs_baseline_low": -0.05, "vs_baseline_high": 0.5, "n_pairs": 5, "improved_baseline": 3},
            {"condition": "grpo", "end_mean": 0.25, "end_low": 0.2, "end_high": 0.3, "vs_baseline_mean": 0.15,
             "vs_baseline_low": 0.05, "vs_baseline_high": 0.25, "n_pairs": 5, "improved_baseline": 5}]
    table = regime_dependence.read_table(_table(tmp_path / "a.csv", rows))
    assert regime_dependence.winners(table) == ["grpo", "es"]        # care's interval straddles 0
    assert regime_dependence.main([f"tiny={tmp_path / 'a.csv'}", f"small={tmp_path / 'a.csv'}"]) == 0
    out = capsys.readouterr().out
    assert "| es | 20.0 [15.0, 25.0]; vs naive +10.0 [+1.0, +20.0], 4/5;" in out
    assert "| tiny (ours) | small (ours) | Qwen-2.5-3B | Qwen-2.5-7B |" in out
    assert "grpo, es | grpo, es |" in out


def test_the_tiny_sweep_table_reads(capsys):
    table = ROOT / "studies" / "sweep-28ee746ca0" / "table-new.csv"
    assert regime_dependence.main([f"tiny={table}"]) == 0
    assert "| naive | 0.0 [0.0, 0.0]" in capsys.readouterr().out


def test_a_missing_table_is_one_line(tmp_path, capsys):
    assert regime_dependence.main([f"tiny={tmp_path / 'none.csv'}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
