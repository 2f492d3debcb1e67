"""The third kind of test: the benchmark's own test code, run for real in the sandbox.

Every verdict kind, the reward hacks a policy could learn (exiting before the asserts,
objects that fake equality, patching what the test code uses, forging the proof), and the
hostile-program suite, all against test-code tasks.
"""
from __future__ import annotations

import time

import pytest
from grader_helpers import leftover_processes
from test_grader_hostile import HOSTILE

from grader import Outcome
from grader.spec import task_spec

CHECK = """import math

def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(-4, 4) == 0
    assert math.isclose(candidate(0.5, 0.25), 0.75)

check(add)
"""
TASK = {"task_id": "t", "tests": [], "test_code": CHECK, "time_limit_s": 0.5}
ADD = "def add(a, b):\n    return a + b\n"
RTE, WA = Outcome.RUNTIME_ERROR, Outcome.WRONG_ANSWER


@pytest.fixture
def g(bwrap_grader):
    yield bwrap_grader
    assert leftover_processes(bwrap_grader) == []


@pytest.mark.parametrize("program, outcome, line", [
    (ADD, Outcome.PASSED, None),
    ("def add(a, b):\n    return a - b", WA, 4),  # the failing assert's line in the test code
    ("def add(a, b):\n    return a + b if a < 0 else 3", WA, 6),
    ("def add(a, b):\n    return [a, b][2]", RTE, 4),
    ("def add(a, b):\n    raise AssertionError", RTE, 4),  # the program's assert is not a check's
    ("def plus(a, b):\n    return a + b", RTE, 8),  # no `add`: NameError at check(add)
    ("def add(a, b):\n    while True:\n        pass", Outcome.TIMEOUT, 4),
    ("def add(a, b):\n    import time\n    time.sleep(100)", Outcome.TIMEOUT, None),
    ("def add(a, b):\n    x = []\n    while True:\n        x.append(' ' * 10 ** 6)",
     Outcome.MEMORY_LIMIT, 4),
    ("x = bytearray(1 << 40)", Outcome.MEMORY_LIMIT, 0),
    ("def add(a, b):\n    while True:\n        print('x' * 1000)", Outcome.OUTPUT_LIMIT, 4),
    ("def add(a, b)\n    return a + b", Outcome.SYNTAX_ERROR, None),
    ("def add(a, b):\n    return a + b\nprint('noise')\nimport sys\nprint('x', file=sys.stderr)",
     Outcome.PASSED, None),
])
def test_every_verdict_kind(g, program, outcome, line):
    verdict = g.grade(program, TASK)
    assert verdict.outcome == outcome, verdict
    if line is not None:
        assert verdict.first_failed_test == line, verdict


def test_values_cross_as_plain_builtins_and_exceptions_keep_their_type(g):
    test_code = (
        "r = f(3)\n"
        "assert r == ({1: [2.5, 'x', b'y', None, True]}, {1, 2}, frozenset([3]), 1j, -10 ** 40)\n"
        "assert type(r[0][1][0]) is float and type(r) is tuple\n"
        "try:\n    f(-1)\nexcept ValueError as e:\n    assert str(e) == 'negative'\n"
        "else:\n    raise AssertionError('no ValueError')\n"
        "assert HELPER == 7 and helper(2) == 14\n"
        "assert math.floor(2.5) == 2 and path.join('a', 'b') == 'a/b'\n")
    program = ("import math\nimport os.path as path\nHELPER = 7\ndef helper(x):\n    return HELPER * x\n"
               "def f(n):\n    if n < 0:\n        raise ValueError('negative')\n"
               "    return ({1: [2.5, 'x', b'y', None, True]}, {1, 2}, frozenset([3]), 1j, "
               "-10 ** 40)\n")
    verdict = g.grade(program, dict(TASK, test_code=test_code))
    assert verdict.outcome is Outcome.PASSED, verdict


HACKS = {
    # Exiting before or during the test code: an exit status is no proof.
    "sys_exit_0_at_top": "import sys\nsys.exit(0)",
    "os_exit_0_at_top": "import os\nos._exit(0)",
    "os_exit_0_inside_the_call": "def add(a, b):\n    import os\n    os._exit(0)",
    "sys_exit_0_inside_the_call": "def add(a, b):\n    raise SystemExit(0)",
    "atexit_then_exit": ("import atexit, os\natexit.register(lambda: os.write(1, b'ok'))\n"
                         "def add(a, b):\n    raise SystemExit"),
    "kills_the_test_process": "import os\nos.kill(os.getppid(), 9)\n" + ADD.replace("+", "-"),
    # Objects that fake equality never reach an assert.
    "eq_always_true": ("class Any:\n    def __eq__(self, other):\n        return True\n"
                       "    __hash__ = None\ndef add(a, b):\n    return Any()"),
    "int_subclass_eq": ("class I(int):\n    def __eq__(self, other):\n        return True\n"
                        "def add(a, b):\n    return I(0)"),
    "float_subclass_inside_a_list": ("class F(float):\n    __eq__ = lambda s, o: True\n"
                                     "def add(a, b):\n    return [F(0)][0]"),
    # Patching what the test code uses: only the program's own process changes.
    "patches_builtins_and_isclose": (
        "import builtins, math\nmath.isclose = lambda *a, **k: True\n"
        "builtins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\ndef add(a, b):\n    return 0"),
    "defines_check": "def check(candidate):\n    pass\ndef add(a, b):\n    return 0",
    "replaces_the_candidate_name_in_builtins": (
        "import builtins\nbuiltins.add = lambda a, b: a + b\ndef add(a, b):\n    return 0"),
    # Forging the harness's proof: its channels are closed in the program's process.
    "forges_the_record": ("import os, struct\ndef add(a, b):\n    for fd in (3, 4, 6):\n"
                          "        try:\n            os.write(fd, struct.pack('<IIII', 0, 0, 16, 0))\n"
                          "        except OSError:\n            pass\n    os._exit(0)"),
    "reads_the_test_process_memory": (
        "import os\ndef add(a, b):\n    with open('/proc/%d/mem' % os.getppid(), 'rb') as f:\n"
        "        f.read(1)\n    return a + b"),
    "reopens_the_parents_fds": (
        "import os\ndef add(a, b):\n    os.open('/proc/%d/fd/3' % os.getppid(), os.O_WRONLY)\n"
        "    return a + b"),
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hacks_fail(g, name):
    verdict = g.grade(HACKS[name], TASK)
    assert not verdict.passed and verdict.reward == 0.0, verdict
    assert verdict.outcome in (WA, RTE), verdict


@pytest.mark.parametrize("program", [HACKS["eq_always_true"], HACKS["os_exit_0_inside_the_call"]])
def test_a_failure_stands_even_when_the_test_code_catches_it(g, program):
    # Test code that swallows every exception (as some benchmarks' do around a call): a
    # non-builtin result or a dead program still fails, though the test code ran to its end.
    test_code = "try:\n    assert add(1, 2) == 3\nexcept BaseException:\n    pass\n"
    verdict = g.grade(program, dict(TASK, test_code=test_code))
    assert verdict.outcome in (WA, RTE) and not verdict.passed, verdict
    assert g.grade(ADD, dict(TASK, test_code=test_code)).passed


def test_the_test_code_is_not_in_the_programs_memory(g):
    # The program scans its heap, stack and anonymous memory (ctypes) for a marker from the test
    # code (built at run time, so that the program's own text does not hold it): none found.
    marker = "MARKER" + "7f3a9c"
    test_code = f"assert scan() == 0, '{marker}'\n"
    program = ("import ctypes\nlibc = ctypes.CDLL(None)\nlibc.memmem.restype = ctypes.c_void_p\n"
               "libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, "
               "ctypes.c_size_t]\n"
               "def scan():\n    needle = bytes([77, 65, 82, 75, 69, 82, 55, 102, 51, 97, 57, 99])\n"
               "    own = ctypes.cast(ctypes.c_char_p(needle), ctypes.c_void_p).value\n"
               "    found = 0\n    with open('/proc/self/maps') as maps:\n"
               "        regions = [l.split() for l in maps]\n    for r in regions:\n"
               "        if not r[1].startswith('r') or len(r) > 5 and r[5] not in ('[heap]', '[stack]'):\n"
               "            continue\n"
               "        at, end = (int(x, 16) for x in r[0].split('-'))\n"
               "        while True:  # memmem in place: no copy of the memory it searches\n"
               "            hit = libc.memmem(at, end - at, own, len(needle))\n"
               "            if not hit:\n                break\n"
               "            found += hit != own\n            at = hit + 1\n"
               "    return found\n")
    assert marker in test_code and marker not in program
    verdict = g.grade(program, dict(TASK, test_code=test_code, time_limit_s=5.0))
    assert verdict.outcome is Outcome.PASSED, verdict
    # The scan does find the marker when the program's memory holds a copy of it.
    planted = program + "PLANTED = bytes([77, 65, 82, 75, 69, 82, 55, 102, 51, 97, 57, 99]) + b'!'\n"
    verdict = g.grade(planted, dict(TASK, test_code=test_code, time_limit_s=5.0))
    assert verdict.outcome is WA, verdict


# Each hostile program runs as the program of a test-code task whose test calls `probe`, which
# none of them defines: none may pass, and the limits still give their own verdicts.
PROBE_TASK = dict(TASK, test_code="assert probe() == 1\n", time_limit_s=0.3, memory_mb=128)
EXPECTED = {"infinite_loop": Outcome.TIMEOUT, "memory_bomb": Outcome.MEMORY_LIMIT,
            "unbounded_print": Outcome.OUTPUT_LIMIT, "unbounded_stderr": Outcome.OUTPUT_LIMIT,
            "long_sleep": Outcome.TIMEOUT, "fork_bomb_that_spins": Outcome.TIMEOUT}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_against_test_code(g, name):
    started = time.monotonic()
    verdict = g.grade(HOSTILE[name][0], PROBE_TASK)
    assert not verdict.passed, verdict
    if name in EXPECTED:
        assert verdict.outcome is EXPECTED[name], verdict
    assert time.monotonic() - started < 5.0  # wall backstop: 3 x 0.3 s + 1 s + 1.28 s, and slack
    assert leftover_processes(g) == []


@pytest.mark.parametrize("change, message", [
    ({"test_code": "assert (\n"}, "does not compile"),
    ({"test_code": "  "}, "non-empty str"),
    ({"tests": [{"input": "", "output": ""}]}, "has no 'tests'"),
])
def test_bad_test_code_task_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        task_spec(dict(TASK, **change))
