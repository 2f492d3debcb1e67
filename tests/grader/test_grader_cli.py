"""`python -m grader grade`, run as a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from grader_helpers import SUM_PROGRAM, SUM_TASK

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def files(tmp_path):
    tasks = write_jsonl(tmp_path / "tasks.jsonl", [
        dict(SUM_TASK, task_id="sum"),
        {"task_id": "add", "prompt": "", "tests": [{"input": "[1, 2]", "output": "3"}],
         "fn_name": "add", "starter_code": None, "time_limit_s": 1.0, "memory_mb": 256,
         "source": "test", "difficulty": None},
    ])
    programs = write_jsonl(tmp_path / "programs.jsonl", [
        {"task_id": "sum", "program": SUM_PROGRAM},
        {"task_id": "add", "program": "def add(a, b):\n    return a + b"},
        {"task_id": "sum", "program": "print(6)"},
        {"task_id": "add", "program": "def add(:"},
    ])
    return tasks, programs, tmp_path / "verdicts.jsonl"


def test_grades_in_order(files):
    tasks, programs, out = files
    done = run_cli("grade", "--tasks", str(tasks), "--programs", str(programs), "--out", str(out),
                   "--workers", "2")
    assert done.returncode == 0, done.stderr
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(v["task_id"], v["verdict"], v["passed"]) for v in verdicts] == [
        ("sum", "passed", True), ("add", "passed", True), ("sum", "wrong_answer", False),
        ("add", "syntax_error", False)]
    assert "\r[" not in done.stderr  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize("which, line, expected", [
    ("programs", '{"task_id": "sum", "program": "print(1)"}\n{"task_id": "sum", "prog',
     "programs.jsonl:2: not valid JSON"),
    ("programs", '{"task_id": "nope", "program": "print(1)"}\n',
     "programs.jsonl:1: unknown task_id"),
    ("programs", '[1, 2]\n', "programs.jsonl:1: expected a JSON object"),
    ("tasks", '{"task_id": "sum", "tests": []}\n', "tasks.jsonl:1: task has an empty 'tests'"),
    ("tasks", '\n{"tests": [{"input": "", "output": ""}]}\n', "tasks.jsonl:2: missing string"),
])
def test_malformed_line_is_one_clear_line(files, which, line, expected):
    tasks, programs, out = files
    (tasks if which == "tasks" else programs).write_text(line)
    done = run_cli("grade", "--tasks", str(tasks), "--programs", str(programs), "--out", str(out))
    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_missing_file(files):
    tasks, _, out = files
    done = run_cli("grade", "--tasks", str(tasks), "--programs", "/nonexistent.jsonl",
                   "--out", str(out))
    assert done.returncode == 2 and "nonexistent.jsonl" in done.stderr
    assert "Traceback" not in done.stderr
