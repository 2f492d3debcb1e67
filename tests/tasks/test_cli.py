"""``python -m selfregress.tasks``: export and show, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from selfregress.tasks import load_tasks, read_jsonl


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "selfregress.tasks", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_export_a_synthetic_split(tmp_path):
    out = tmp_path / "eval.jsonl"
    result = cli("export", "--source", "synthetic:12", "--split", "eval", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 12 tasks to {out}"
    assert read_jsonl(out) == load_tasks("synthetic:12", split="eval")
    record = json.loads(out.read_text().splitlines()[0])
    assert set(record) >= {"task_id", "prompt", "tests", "fn_name", "starter_code", "time_limit_s",
                           "memory_mb", "source", "difficulty", "float_tol", "solutions"}


def test_export_a_dataset_and_show(tmp_path, datasets):
    out = tmp_path / "apps.jsonl"
    result = cli("export", "--source", f"apps:{datasets['apps']}", "--max-tests", "1", "--out", str(out))
    assert result.returncode == 0 and "wrote 3 tasks" in result.stdout
    assert "warning: apps: skipped 1 of 4 records" in result.stderr
    assert all(len(t.tests) == 1 for t in read_jsonl(out))
    shown = cli("show", "--source", "synthetic:2")
    assert shown.returncode == 0 and shown.stdout.count("== synthetic/s0-eval-") == 2
    assert "-- reference\n" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["--source", "bogus:x"], "error: unknown task source 'bogus:x'; known: synthetic[:N]"),
    (["--source", "apps:/no/such/file.jsonl"], "error: /no/such/file.jsonl: no such file or folder"),
    (["--source", "synthetic:3", "--allow-pickle"],
     "error: option 'allow_pickle' applies only to the livecodebench"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, message):
    result = cli("export", *args, "--out", str(tmp_path / "t.jsonl"))
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and not (tmp_path / "t.jsonl").exists()


def test_malformed_jsonl_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(load_tasks("synthetic:1")[0].to_dict()) + "\n{not json\n")
    result = cli("export", "--source", str(bad), "--out", str(tmp_path / "t.jsonl"))
    assert result.returncode == 2 and f"error: {bad}:2: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr
