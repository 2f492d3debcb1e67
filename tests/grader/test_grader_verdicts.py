"""Every verdict kind from a real program, call-based tasks, and the public API."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from grader_helpers import SUM_PROGRAM, SUM_TASK, stdin_task

import grader
from grader import Outcome, Verdict


VERDICT_CASES = [
    (SUM_PROGRAM, Outcome.PASSED, None),
    ("import sys\nprint(sum(map(int, sys.stdin.read().split()[1:])))", Outcome.PASSED, None),
    ("print(sum(map(int, open(0).read().split()[1:])))", Outcome.PASSED, None),
    ("import os\nprint(sum(map(int, os.read(0, 99).split()[1:])))", Outcome.PASSED, None),
    ("import sys\nsys.stdout.buffer.write(b'%d\\n' % sum(map(int, sys.stdin.buffer.read()"
     ".split()[1:])))", Outcome.PASSED, None),
    ("import os\nos.write(1, b'%d\\n' % sum(map(int, input() and input().split())))",
     Outcome.PASSED, None),
    # Competitive-programming habits: exit(), atexit output, a worker thread, os._exit.
    (SUM_PROGRAM + "exit()", Outcome.PASSED, None),
    ("import atexit, io, os, sys\nout = io.StringIO()\natexit.register(lambda: "
     "os.write(1, out.getvalue().encode()))\ninput()\nout.write(str(sum(map(int, "
     "input().split()))) + '\\n')", Outcome.PASSED, None),
    ("import threading\ndef main():\n    input()\n    print(sum(map(int, input().split())))\n"
     "threading.stack_size(1 << 24)\nthreading.Thread(target=main).start()", Outcome.PASSED, None),
    ("import os, sys\ninput()\nprint(sum(map(int, input().split())))\nsys.stdout.flush()\n"
     "os._exit(0)", Outcome.PASSED, None),
    ("n = int(input())\nprint(6)", Outcome.WRONG_ANSWER, 2),
    ("print(6)\nprint(6)", Outcome.WRONG_ANSWER, 0),
    ("n = int(input())\nx = sum(map(int, input().split()))\nprint(x if n < 2 else 1 / 0)",
     Outcome.RUNTIME_ERROR, 0),
    ("n = int(input())\nraise SystemExit(n - 1)", Outcome.RUNTIME_ERROR, 0),
    ("while True:\n    pass", Outcome.TIMEOUT, 0),
    ("n = int(input())\nwhile n < 3:\n    pass\nprint(6)", Outcome.TIMEOUT, 1),
    ("x = bytearray(1 << 40)", Outcome.MEMORY_LIMIT, 0),
    ("x = []\nwhile True:\n    x.append(' ' * 10 ** 6)", Outcome.MEMORY_LIMIT, 0),
    ("while True:\n    print('x' * 1000)", Outcome.OUTPUT_LIMIT, 0),
    ("f = open('big', 'w')\nwhile True:\n    f.write('x' * 10 ** 6)", Outcome.OUTPUT_LIMIT, 0),
    ("print(", Outcome.SYNTAX_ERROR, None),
    ("x = 1\0", Outcome.SYNTAX_ERROR, None),
]
VERDICT_IDS = {"x = []\nwhile True:\n    x.append(' ' * 10 ** 6)": "memory bomb"}


@pytest.mark.parametrize("program, outcome, first_failed", VERDICT_CASES,
                         ids=[VERDICT_IDS.get(case[0]) for case in VERDICT_CASES])
def test_every_verdict_kind(bwrap_grader, program, outcome, first_failed):
    task = dict(SUM_TASK, time_limit_s=0.5)
    verdict = bwrap_grader.grade(program, task)
    assert (verdict.outcome, verdict.first_failed_test) == (outcome, first_failed), verdict
    assert verdict.reward == (1.0 if outcome is Outcome.PASSED else 0.0)
    assert verdict.sandbox == "bwrap"


def test_sandbox_error_when_the_sandbox_fails():
    # Kill the supervisor from outside while a program runs: that program gets SANDBOX_ERROR,
    # and the next one runs on a restarted server.
    with grader.Grader(workers=1, sandbox="bwrap") as g:
        bwrap_pid = g._servers[0]._proc.pid
        supervisor = next(pid for pid in g._servers[0].host_pids()
                          if Path(f"/proc/{pid}/stat").read_text().split()[3] == str(bwrap_pid))
        threading.Timer(0.5, os.kill, (supervisor, signal.SIGKILL)).start()
        verdict = g.grade("import time\ntime.sleep(30)", SUM_TASK)
        assert verdict.outcome is Outcome.SANDBOX_ERROR and not verdict.passed
        assert "sandbox server died" in verdict.stderr_tail
        assert g.grade(SUM_PROGRAM, SUM_TASK).passed


def test_timeout_uses_cpu_time_not_wall_time(bwrap_grader):
    sleepy = "import time\ntime.sleep(0.3)\n" + SUM_PROGRAM  # 0.9 s of wall, no CPU
    verdict = bwrap_grader.grade(sleepy, dict(SUM_TASK, time_limit_s=0.2))
    assert verdict.passed and verdict.run_time_s < 0.2
    burn = "x = 0\nwhile True:\n    x += 1"
    started = time.monotonic()
    verdict = bwrap_grader.grade(burn, stdin_task([("", "")], time_limit_s=0.3))
    # run_time_s is the child's rusage (user + system), the limit an interval timer on user time:
    # on a loaded VM the two clocks part (a 0.3 s timer fired at 0.208 s of rusage, load ~8), so
    # the lower bound only says "not killed at once", the upper one "not let run on".
    assert verdict.outcome is Outcome.TIMEOUT and 0.1 <= verdict.run_time_s <= 0.6
    assert time.monotonic() - started < 1.5


def test_each_test_gets_fresh_globals_and_stdin(bwrap_grader):
    program = ("try:\n    seen\nexcept NameError:\n    seen = 0\nseen += 1\n"
               "import sys\nprint(seen, len(sys.stdin.read()))")
    task = stdin_task([("ab", "1 2"), ("abcd", "1 4"), ("", "1 0")])
    assert bwrap_grader.grade(program, task).passed


def test_stderr_tail_has_the_traceback(bwrap_grader):
    verdict = bwrap_grader.grade("def f():\n    return 1 / 0\nf()", SUM_TASK)
    assert verdict.outcome is Outcome.RUNTIME_ERROR
    assert 'File "main.py", line 2, in f' in verdict.stderr_tail
    assert verdict.stderr_tail.rstrip().endswith("ZeroDivisionError: division by zero")


# ------------------------------------------------------------------ call-based tasks
ADD_TASK = {"tests": [{"input": "[1, 2]", "output": "3"}, {"input": "[[1, 2], 5]",
                                                           "output": "[6, 7]"}],
            "fn_name": "add", "time_limit_s": 1.0, "memory_mb": 256}


@pytest.mark.parametrize("program, outcome", [
    ("def add(a, b):\n    return [x + b for x in a] if isinstance(a, list) else a + b",
     Outcome.PASSED),
    ("class Solution:\n    def add(self, a, b):\n        return [x + b for x in a] "
     "if isinstance(a, list) else a + b", Outcome.PASSED),
    ("def add(a, b):\n    print('debug output is ignored')\n    return [x + b for x in a] "
     "if isinstance(a, list) else a + b", Outcome.PASSED),
    ("def add(a, b):\n    return (6, 7) if isinstance(a, list) else a + b", Outcome.PASSED),
    ("def add(a, b):\n    return [6] if isinstance(a, list) else a + b", Outcome.WRONG_ANSWER),
    ("def add(a, b):\n    return {6, 7} if isinstance(a, list) else 3", Outcome.WRONG_ANSWER),
    ("def add(a, b):\n    return True if isinstance(a, list) else True", Outcome.WRONG_ANSWER),
    ("def plus(a, b):\n    return a + b", Outcome.RUNTIME_ERROR),
    ("def add(a, b):\n    return a + b", Outcome.RUNTIME_ERROR),  # list + int
])
def test_call_based(bwrap_grader, program, outcome):
    assert bwrap_grader.grade(program, ADD_TASK).outcome is outcome


def test_call_based_float_tolerance(bwrap_grader):
    task = {"tests": [{"input": "[1, 3]", "output": "0.3333333"}], "fn_name": "div",
            "float_tol": 1e-6}
    assert bwrap_grader.grade("def div(a, b):\n    return a / b", task).passed
    assert not bwrap_grader.grade("def div(a, b):\n    return 0.33", task).passed


# ------------------------------------------------------------------ the API
@dataclasses.dataclass
class Case:
    input: str
    output: str


@dataclasses.dataclass(frozen=True)
class Task:  # the shape of selfregress.tasks.Task
    task_id: str
    prompt: str
    tests: tuple
    fn_name: str | None = None
    starter_code: str | None = None
    time_limit_s: float = 2.0
    memory_mb: int = 256
    source: str = "synthetic"
    difficulty: str | None = None
    float_tol: float | None = None
    solutions: tuple = ()


def test_duck_typed_task_objects(bwrap_grader):
    task = Task("t0", "sum them", tests=(Case("2\n1 2\n", "3\n"), {"input": "1\n5\n",
                                                                    "output": "5"}))
    assert bwrap_grader.grade(SUM_PROGRAM, task).passed


def test_grade_many_keeps_input_order(bwrap_grader):
    programs = [f"print({i})" for i in range(40)]
    tasks = [stdin_task([("", str(i if i % 3 else -1))]) for i in range(40)]
    verdicts = bwrap_grader.grade_many(list(zip(programs, tasks)), workers=2)
    assert [v.passed for v in verdicts] == [i % 3 != 0 for i in range(40)]
    assert bwrap_grader.grade_many([]) == []


def test_module_level_functions_use_a_default_grader():
    assert grader.grade(SUM_PROGRAM, SUM_TASK).passed
    verdicts = grader.grade_many([(SUM_PROGRAM, SUM_TASK), ("print(", SUM_TASK)], workers=2)
    assert [v.outcome for v in verdicts] == [Outcome.PASSED, Outcome.SYNTAX_ERROR]


def test_verdict_shape():
    verdict = Verdict(Outcome.PASSED, None, 0.01, "", "bwrap")
    assert verdict.passed and verdict.reward == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.outcome = Outcome.TIMEOUT
    assert [o.value for o in Outcome] == [
        "passed", "wrong_answer", "runtime_error", "timeout", "memory_limit", "output_limit",
        "syntax_error", "sandbox_error"]
    assert Outcome("timeout") is Outcome.TIMEOUT


def test_task_defaults_and_errors():
    spec = grader.task_spec({"tests": [{"input": "", "output": ""}]})
    assert (spec.time_limit_s, spec.memory_mb, spec.fn_name) == (2.0, 256, None)
    for bad, key in [({"tests": []}, "tests"), ({}, "tests"),
                     ({"tests": [{"input": 1, "output": ""}]}, "tests[0]"),
                     ({"tests": [{"input": "", "output": ""}], "time_limit_s": -1}, "time_limit_s"),
                     ({"tests": [{"input": "", "output": ""}], "memory_mb": "big"}, "memory_mb"),
                     ({"tests": [{"input": "[]", "output": "not json"}], "fn_name": "f"}, "output"),
                     ({"tests": [{"input": "5", "output": "5"}], "fn_name": "f"}, "input"),
                     ({"tests": [{"input": "", "output": ""}], "fn_name": "a b"}, "fn_name")]:
        with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
            grader.task_spec(bad)


def test_bad_arguments_fail_before_running(bwrap_grader):
    with pytest.raises(ValueError, match="tests"):
        bwrap_grader.grade_many([(SUM_PROGRAM, SUM_TASK), (SUM_PROGRAM, {"tests": []})])
    with pytest.raises(TypeError):
        bwrap_grader.grade(b"print(1)", SUM_TASK)
    with pytest.raises(ValueError, match="workers"):
        grader.Grader(workers=0)
    with pytest.raises(ValueError, match="sandbox"):
        grader.Grader(sandbox="docker")
