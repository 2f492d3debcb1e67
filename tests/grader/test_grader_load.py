"""Verdicts do not depend on load: every verdict kind, idle and under a 2-process CPU hog.

The hog is two `while 1: pass` interpreters that this test starts and stops itself. A reward
that changes with how busy the machine is would be noise in every RL step: the memory bomb
once read TIMEOUT under CI load, because the kernel's time zeroing its pages counted against
the CPU limit. The per-test limit now counts user time, and user+system time only against a
looser backstop that allows the time to fault in the whole memory cap (`grader._runner.
cpu_timer`). The second hog faults pages in, the contention that slowed the bomb's own faults.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from grader_helpers import SUM_TASK, leftover_processes
from test_grader_testcode import TASK as TEST_CODE_TASK
from test_grader_verdicts import VERDICT_CASES

CODE_CASES = [
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    return a - b",
    "def add(a, b):\n    return [a, b][2]",
    "def add(a, b):\n    while True:\n        pass",
    "def add(a, b):\n    x = []\n    while True:\n        x.append(' ' * 10 ** 6)",
    "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(10 ** 7))",
    "def add(a, b):\n    while True:\n        print('x' * 1000)",
    "import time\ntime.sleep(100)",
]


def _verdicts(g):
    pairs = [(program, dict(SUM_TASK, time_limit_s=0.5)) for program, _, _ in VERDICT_CASES]
    pairs += [(program, TEST_CODE_TASK) for program in CODE_CASES]
    return [(v.outcome, v.first_failed_test) for v in g.grade_many(pairs)]


HOGS = {"cpu": "while 1: pass", "page_faults": "while 1: x = bytearray(1 << 28)"}


@pytest.mark.parametrize("hog", sorted(HOGS))
def test_every_verdict_is_the_same_under_a_two_process_hog(bwrap_grader, hog):
    idle = _verdicts(bwrap_grader)
    assert idle[:len(VERDICT_CASES)] == [(o, f) for _, o, f in VERDICT_CASES]
    hogs = [subprocess.Popen([sys.executable, "-c", HOGS[hog]]) for _ in range(2)]
    try:
        loaded = _verdicts(bwrap_grader)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert loaded == idle
    assert leftover_processes(bwrap_grader) == []
