"""Helpers for the grader tests (a uniquely named module: tests/ has no __init__.py)."""
from __future__ import annotations

import os
from pathlib import Path

import grader
from grader.sandbox import SANDBOX_UID_BASE


def stdin_task(tests, time_limit_s=1.0, memory_mb=256, **extra):
    """A stdin/stdout task from (input, output) pairs."""
    return {"task_id": "t", "tests": [{"input": i, "output": o} for i, o in tests],
            "fn_name": None, "time_limit_s": time_limit_s, "memory_mb": memory_mb, **extra}


SUM_TASK = stdin_task([("3\n1 2 3\n", "6\n"), ("2\n10 -4\n", "6\n"), ("1\n7\n", "7\n")])
SUM_PROGRAM = "n = int(input())\nprint(sum(map(int, input().split())))\n"


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (uid, ppid, command) for every process on the host."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
            command = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")[:80]
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        table[int(name)] = (int(fields["Uid"].split()[0]), int(fields["PPid"]),
                            command.decode(errors="replace"))
    return table


def leftover_processes(g: grader.Grader) -> list[str]:
    """Processes a program of this grader left behind: a descendant of one of its servers that
    is not the server itself (bwrap, supervisor, zygote), or any process running as one of its
    servers' sandbox uids (SANDBOX_UID_BASE + the server's host pid), wherever it went."""
    servers = set().union(*(server.host_pids() for server in g._servers))
    uids = {SANDBOX_UID_BASE + server._proc.pid for server in g._servers if server._proc}
    table = _process_table()
    found = []
    for pid, (uid, ppid, command) in table.items():
        if pid in servers:
            continue
        ancestor, seen = ppid, 0
        while ancestor not in (0, 1) and ancestor not in servers and seen < 64:
            ancestor, seen = table.get(ancestor, (0, 0, ""))[1], seen + 1
        if ancestor in servers or uid in uids:
            found.append(f"pid {pid} uid {uid} ppid {ppid}: {command}")
    return found


def assert_still_grades(g: grader.Grader) -> None:
    verdicts = g.grade_many([(SUM_PROGRAM, SUM_TASK)] * 4)
    assert all(v.passed for v in verdicts), verdicts
