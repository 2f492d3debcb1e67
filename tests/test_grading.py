"""A sandbox_error is counted, retried once, and fails loudly if it persists: real sandbox failures.

Two failures provoked for real, no fake: a transient one (the sandbox's supervisor is killed
from outside while a program runs, as tests/grader does) and a persistent one (a Grader whose
SandboxConfig asks for an open-file limit the kernel refuses, so every child's set-up fails).
"""

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

import grader
from grader import Outcome, SandboxConfig
from selfregress.grading import SandboxFailure, grade_retrying

SUM_TASK = {"task_id": "t", "tests": [{"input": "1 2\n", "output": "3\n"}], "fn_name": None,
            "time_limit_s": 0.5, "memory_mb": 256}
SUM_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
# Every program's child fails its set-up: RLIMIT_NOFILE above the kernel's nr_open.
BROKEN = SandboxConfig(nofile=1 << 30)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_transient_sandbox_error_is_counted_and_retried():
    with grader.Grader(workers=1, sandbox="bwrap") as g:
        bwrap_pid = g._servers[0]._proc.pid
        supervisor = next(pid for pid in g._servers[0].host_pids()
                          if Path(f"/proc/{pid}/stat").read_text().split()[3] == str(bwrap_pid))
        threading.Timer(0.5, os.kill, (supervisor, signal.SIGKILL)).start()
        graded = grade_retrying(g, [("import time\ntime.sleep(30)", SUM_TASK), (SUM_PROGRAM, SUM_TASK)])
    assert (graded.sandbox_errors, graded.unresolved) == (1, 0)
    # the retry really graded the first program again: on a live server it sleeps past the
    # wall-clock backstop (3 x 0.5 s + 1 s) and times out; the second passed the first time
    assert [v.outcome for v in graded.verdicts] == [Outcome.TIMEOUT, Outcome.PASSED]
    graded.check("training step")   # nothing unresolved: no error


def test_a_persistent_sandbox_error_fails_loudly_with_the_count():
    with grader.Grader(workers=2, config=BROKEN) as g:
        graded = grade_retrying(g, [(SUM_PROGRAM, SUM_TASK)] * 3)
    assert (graded.sandbox_errors, graded.unresolved) == (3, 3)
    assert all(v.outcome is Outcome.SANDBOX_ERROR and v.reward == 0.0 for v in graded.verdicts)
    with pytest.raises(SandboxFailure) as failure:
        graded.check("evaluation")
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("evaluation: the grader's sandbox failed on 3 of 3 programs even on a retry "
                              "(3 sandbox_error verdicts on the first try: ValueError: not allowed to raise")
