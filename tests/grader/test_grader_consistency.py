"""Determinism: the same programs graded twice, the second time with a busy CPU, give the
same verdicts (benchmarks/grader_throughput.py does the same on 1,000 programs)."""
from __future__ import annotations

import subprocess
import sys
import time

from grader_helpers import SUM_PROGRAM, SUM_TASK, stdin_task

from grader import Outcome


BURN = "x = 0\nfor i in range(%d):\n    x += i\n"


def _loop_count(cpu_s: float) -> int:
    """Iterations of BURN (module-level code, like a program) that take about cpu_s here."""
    n, started = 300_000, time.process_time()
    exec(BURN % n, {})
    return int(n * cpu_s / max(time.process_time() - started, 1e-6))


def test_same_verdicts_under_load(bwrap_grader):
    limit = 0.25
    well_under, well_over = _loop_count(0.25 * limit), _loop_count(4 * limit)
    task = dict(SUM_TASK, time_limit_s=limit)
    burn = BURN
    programs = [
        SUM_PROGRAM, burn % well_under + SUM_PROGRAM, burn % well_over + SUM_PROGRAM,
        "import random\nprint(random.randint(1, 10 ** 9))", "print(hash('abc') % 7)",
        "print(sorted({'b', 'a', 'c'}))", "n = int(input())\nprint(6 if n > 1 else 1 / 0)",
        "print(", "import time\ntime.sleep(0.05)\n" + SUM_PROGRAM,
    ]
    pairs = [(p, task) for p in programs] * 4
    quiet = bwrap_grader.grade_many(pairs)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = bwrap_grader.grade_many(pairs)
    finally:
        busy.kill()
        busy.wait()
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(quiet, loaded))
              if (a.outcome, a.first_failed_test) != (b.outcome, b.first_failed_test)]
    assert differ == []
    assert {v.outcome for v in quiet} >= {Outcome.PASSED, Outcome.TIMEOUT,
                                         Outcome.WRONG_ANSWER, Outcome.RUNTIME_ERROR,
                                         Outcome.SYNTAX_ERROR}
    assert quiet[1].passed and quiet[2].outcome is Outcome.TIMEOUT


def test_randomness_and_hashing_are_reproducible(bwrap_grader):
    # Seeds are fixed (PYTHONHASHSEED=0, no urandom reseed), so a program that depends on
    # them gets the same verdict from every worker, every time.
    program = "import random\nprint(random.random(), hash('selfregress'))"
    probe = bwrap_grader.grade_many([(program, stdin_task([("", "?")]))] * 6, workers=2)
    assert len({v.outcome for v in probe}) == 1
    reference = bwrap_grader.grade(
        "import random, sys\nsys.stderr.write('%r %r' % (random.random(), hash('selfregress')))",
        stdin_task([("", "")]))
    seen = {bwrap_grader.grade("import random\nprint('%r %r' % (random.random(), "
                               "hash('selfregress')))", stdin_task([("", reference.stderr_tail)])
                               ).outcome for _ in range(4)}
    assert seen == {Outcome.PASSED}
