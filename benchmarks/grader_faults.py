"""Where a graded program's cost goes, by sandbox process: page faults and CPU per program.

    python benchmarks/grader_faults.py                 # 1,000 programs x 5 tests, 1 worker
    python benchmarks/grader_faults.py --programs 300

The per-program cost of the grader is mostly its forked child's copy-on-write page faults, and a
fault count, unlike a CPU time, does not move with the machine's load: this is the figure to
compare before and after a change to the runner (`grader/_runner.py`) or the supervisor. It
grades the throughput benchmark's programs (fresh copies each round, so the compile cache never
helps) on one fork server and reads, from /proc, the minor faults and CPU time of:
  child       the forked children (the zygote's reaped children: cminflt, cutime + cstime)
  zygote      the process that forks them (its own faults come from the pages the child shares)
  supervisor  compile, channels, work directory, the wall-clock backstop, the reply
  host        this process: requests, judging
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import grader  # noqa: E402
from grader_throughput import fresh_copies, make_tasks  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[list[int], list[float]]:
    """(minflt, cminflt), (utime + stime, cutime + cstime) in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    times = [int(f) / TICK for f in fields[11:15]]
    return [int(fields[7]), int(fields[8])], [times[0] + times[1], times[2] + times[3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.programs
    pairs = make_tasks(n)
    with grader.Grader(workers=1) as g:
        g.grade_many(pairs[:4])
        server = g._servers[0]
        # bwrap -> supervisor -> zygote (rlimit-only: supervisor -> zygote)
        pids = sorted(server.host_pids())
        supervisor, zygote = pids[-2], pids[-1]
        print(f"{n} programs x 5 tests, 1 worker, sandbox {g.sandbox}, load average "
              f"{os.getloadavg()[0]:.2f}")
        status = {k: v.split()[0] for k, v in (line.split(":", 1) for line in open(f"/proc/{zygote}/status"))
                  if k in ("VmRSS", "RssAnon")}
        print(f"zygote: RSS {status['VmRSS']} kB, anonymous {status['RssAnon']} kB (a fork copies "
              "its page table, an exit unmaps it)")
        for run in range(1, args.rounds + 1):
            before = {pid: proc_stat(pid) for pid in (supervisor, zygote)}
            host, started = os.times(), time.perf_counter()
            verdicts = g.grade_many(fresh_copies(pairs, run))
            wall, host_after = time.perf_counter() - started, os.times()
            after = {pid: proc_stat(pid) for pid in (supervisor, zygote)}

            def per_program(pid, kind, i):
                return (after[pid][kind][i] - before[pid][kind][i]) / n

            host_ms = (host_after.user + host_after.system - host.user - host.system) / n * 1000
            print(f"round {run}: page faults/program: child {per_program(zygote, 0, 1):.0f}, "
                  f"zygote {per_program(zygote, 0, 0):.0f}, supervisor {per_program(supervisor, 0, 0):.1f} | "
                  f"CPU ms/program: child {1000 * per_program(zygote, 1, 1):.2f}, "
                  f"zygote {1000 * per_program(zygote, 1, 0):.2f}, "
                  f"supervisor {1000 * per_program(supervisor, 1, 0):.2f}, host {host_ms:.2f} | "
                  f"{n / wall:.0f} programs/s, passed {sum(v.passed for v in verdicts)}/{n}", flush=True)


if __name__ == "__main__":
    main()
