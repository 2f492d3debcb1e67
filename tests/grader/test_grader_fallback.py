"""The rlimit-only fallback (no bubblewrap), forced with sandbox="rlimit-only"."""
from __future__ import annotations

import os

import pytest
from grader_helpers import SUM_PROGRAM, SUM_TASK, assert_still_grades, leftover_processes, \
    stdin_task

import grader
from grader import Outcome, sandbox

ONE = stdin_task([("", "ok\n")], time_limit_s=0.3)


@pytest.fixture(scope="module")
def fallback():
    with grader.Grader(workers=2, sandbox="rlimit-only") as g:
        yield g


def test_loud_warning_once_and_recorded_on_verdicts(monkeypatch, capfd):
    monkeypatch.setattr(sandbox, "_warned", False)
    with grader.Grader(sandbox="rlimit-only") as first, grader.Grader(sandbox="rlimit-only"):
        verdict = first.grade(SUM_PROGRAM, SUM_TASK)
    err = capfd.readouterr().err
    assert err.count("WARNING: grader is running WITHOUT bubblewrap") == 1
    assert "apt-get install -y bubblewrap" in err
    assert verdict.passed and verdict.sandbox == "rlimit-only"


@pytest.mark.parametrize("program, outcome", [
    (SUM_PROGRAM, Outcome.PASSED),
    ("print(1)", Outcome.WRONG_ANSWER),
    ("1 / 0", Outcome.RUNTIME_ERROR),
    ("while True:\n    pass", Outcome.TIMEOUT),
    ("x = bytearray(1 << 40)", Outcome.MEMORY_LIMIT),
    ("while True:\n    print('x' * 1000)", Outcome.OUTPUT_LIMIT),
    ("print(", Outcome.SYNTAX_ERROR),
])
def test_verdicts(fallback, program, outcome):
    verdict = fallback.grade(program, dict(SUM_TASK, time_limit_s=0.3))
    assert verdict.outcome is outcome and verdict.sandbox == "rlimit-only", verdict
    assert leftover_processes(fallback) == []


@pytest.mark.parametrize("program, outcomes", [
    ("import os\nwhile True:\n    os.fork()", {Outcome.RUNTIME_ERROR, Outcome.TIMEOUT}),
    ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
     {Outcome.TIMEOUT}),
    ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
     "        time.sleep(100)\n    os._exit(0)\nprint('ok')", {Outcome.PASSED}),
    ("import time\ntime.sleep(100)", {Outcome.TIMEOUT}),
])
def test_fork_bombs_and_daemons_are_contained(fallback, program, outcomes):
    assert fallback.grade(program, ONE).outcome in outcomes
    assert leftover_processes(fallback) == []


def test_drops_root_privileges(fallback):
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the grader runs as root")
    verdict = fallback.grade("import os\nprint(os.getuid(), os.getgid(), os.getgroups())",
                             stdin_task([("", "0 0 []")]))
    assert verdict.outcome is Outcome.WRONG_ANSWER  # it is not uid 0
    probe = fallback.grade("import os, sys\nsys.stderr.write(str(os.getuid()))", ONE)
    assert int(probe.stderr_tail) >= sandbox.SANDBOX_UID_BASE


def test_still_grades(fallback):
    assert_still_grades(fallback)
