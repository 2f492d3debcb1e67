"""The Grader: a pool of long-lived fork servers, and the default instance behind grader.grade.

An RL step grades hundreds of programs. Starting a sandbox costs tens of milliseconds, so a
Grader starts one fork server per worker once and keeps it; each program then costs one fork
inside the sandbox plus one request/reply over a pipe (`batch.py` keeps the servers busy).
"""
from __future__ import annotations

import atexit
import marshal
import os
import queue
import threading
from collections.abc import Iterable, Sequence

from . import batch
from ._runner import FAULT_S_PER_MB
from ._testcode import NONCE_BYTES
from .judge import judge, output_cap
from .sandbox import SandboxError, SandboxConfig, ServerProcess, find_bwrap, warn_fallback
from .spec import TaskSpec, task_spec
from .verdict import Outcome, Verdict

SANDBOXES = ("auto", "bwrap", "rlimit-only")


class Grader:
    """Grades programs against tasks in a sandbox. Use as a context manager, or call close().

    workers: fork servers (and concurrent programs) used by grade_many by default.
    sandbox: "auto" (bwrap if it works, else the rlimit-only fallback with a loud warning),
             "bwrap" (fail if bubblewrap does not work) or "rlimit-only" (force the fallback).
    config:  SandboxConfig: limits common to all tasks, CPU pinning.
    """

    def __init__(self, workers: int = 1, sandbox: str = "auto",
                 config: SandboxConfig = SandboxConfig()):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        if sandbox not in SANDBOXES:
            raise ValueError(f"sandbox must be one of {SANDBOXES}, got {sandbox!r}")
        self.workers, self.config = workers, config
        self._servers: list[ServerProcess] = []
        self._idle: queue.SimpleQueue[ServerProcess] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one _grow or close at a time
        self._servers_lock = threading.Lock()  # guards appends to _servers
        self._acquire = threading.Lock()  # taken while a call collects its servers
        self._closed = False
        self.sandbox = self._first_server(sandbox)
        self._grow(workers)

    def _first_server(self, requested: str) -> str:
        bwrap = find_bwrap()
        if requested != "rlimit-only":
            if bwrap is None and requested == "bwrap":
                raise SandboxError("sandbox='bwrap' but bwrap is not installed "
                                   "(apt-get install -y bubblewrap)")
            if bwrap is not None:
                try:
                    self._start("bwrap", bwrap)
                    return "bwrap"
                except SandboxError as exc:
                    if requested == "bwrap":
                        raise
                    reason = f"bwrap failed: {exc}"
            else:
                reason = "bwrap not found"
        else:
            reason = "sandbox='rlimit-only' was requested"
        warn_fallback(reason)
        self._start("rlimit-only", None)
        return "rlimit-only"

    def _start(self, mode: str, bwrap: str | None, index: int = 0) -> None:
        # Pin only a Grader that has the machine to itself (a worker per CPU): small ones
        # pinned to the first CPUs would pile up there.
        cpus = sorted(os.sched_getaffinity(0))
        pin = self.config.pin_cpus and self.workers >= len(cpus)
        cpu = cpus[index % len(cpus)] if pin else None
        server = ServerProcess(mode, self.config, bwrap, cpu)
        server.start()
        with self._servers_lock:
            self._servers.append(server)
        self._idle.put(server)

    def _grow(self, count: int) -> None:
        """Make sure `count` servers exist; new ones start in parallel."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Grader is closed")
            missing = count - len(self._servers)
            if missing <= 0:
                return
            bwrap = find_bwrap() if self.sandbox == "bwrap" else None
            errors: list[BaseException] = []

            def start(index):
                try:
                    self._start(self.sandbox, bwrap, index)
                except BaseException as exc:  # reported below, in the caller's thread
                    errors.append(exc)

            threads = [threading.Thread(target=start, args=(len(self._servers) + i,))
                       for i in range(missing)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]

    # -- grading
    def grade(self, program: str, task: object) -> Verdict:
        """Grade one program against one task."""
        return self.grade_many([(program, task)], workers=1)[0]

    def grade_many(self, pairs: Iterable[tuple[str, object]],
                   workers: int | None = None) -> list[Verdict]:
        """Grade (program, task) pairs concurrently; verdicts come back in input order.

        Raises ValueError (naming the key) for a malformed task, before anything runs.
        """
        pairs = pairs if isinstance(pairs, Sequence) else list(pairs)
        workers = self.workers if workers is None else workers
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        for program, _ in pairs:
            if not isinstance(program, str):
                raise TypeError(f"program must be str, got {type(program).__name__}")
        by_task: dict[int, TaskSpec] = {}  # RL batches hold several samples per task
        for _, task in pairs:  # a bad task fails here, before any I/O
            if id(task) not in by_task:
                by_task[id(task)] = task_spec(task)
        specs = [by_task[id(task)] for _, task in pairs]
        workers = min(workers, len(pairs))
        if workers == 0:
            return []
        self._grow(workers)
        with self._acquire:  # all at once, so that two concurrent calls cannot deadlock
            servers = [self._idle.get() for _ in range(workers)]
        verdicts: list[Verdict | None] = [None] * len(pairs)
        caps = [output_cap(spec, self.config.min_output_bytes) for spec in specs]
        # Test-code tasks: the proof that the test code ran to its end, fresh for every run.
        nonces = [os.urandom(NONCE_BYTES) if spec.test_code is not None else b""
                  for spec in specs]

        def prepare(i: int) -> tuple[bytes, float]:
            spec = specs[i]
            # Wall-clock backstop per test, well above the CPU backstop (which allows the
            # kernel time to fault in the memory cap) so that a loaded machine does not turn a
            # pass, or a memory bomb, into a timeout.
            test_wall_s = (self.config.wall_factor * spec.time_limit_s + self.config.wall_slack_s
                           + FAULT_S_PER_MB * spec.memory_mb)
            request = marshal.dumps({
                "source": pairs[i][0], "fn_name": spec.fn_name, "inputs": list(spec.inputs),
                "cpu_limit_s": spec.time_limit_s, "memory_bytes": spec.memory_mb << 20,
                "out_cap": caps[i], "test_wall_s": test_wall_s,
                "test_code": spec.test_code, "nonce": nonces[i],
            })
            # The server enforces the backstop itself; this only catches a hung server.
            return request, test_wall_s * len(spec.inputs) + 30.0

        def finish(i: int, reply: bytes | SandboxError) -> None:
            if isinstance(reply, SandboxError):
                verdicts[i] = Verdict(Outcome.SANDBOX_ERROR, None, 0.0, str(reply), self.sandbox)
            else:
                verdicts[i] = judge(specs[i], reply, self.sandbox, caps[i], nonces[i])

        try:
            for server in servers:
                if not server.alive:
                    server.restart()
            batch.run(servers, len(pairs), prepare, finish)
        finally:
            for server in servers:
                self._idle.put(server)
        return verdicts  # type: ignore[return-value]

    # -- lifecycle
    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._servers = self._servers, []
        for server in servers:
            server.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- the default Grader
_default: Grader | None = None
_default_lock = threading.Lock()


def default_grader(workers: int = 1) -> Grader:
    """A process-wide Grader, created on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Grader(workers=max(1, workers))
            atexit.register(_close_default)
        return _default


def _close_default() -> None:
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
            _default = None


def grade(program: str, task: object) -> Verdict:
    """Grade one program with the default Grader."""
    return default_grader().grade(program, task)


def grade_many(pairs: Iterable[tuple[str, object]], workers: int | None = None) -> list[Verdict]:
    """Grade (program, task) pairs with the default Grader, concurrently, in input order."""
    if workers is None:
        workers = os.cpu_count() or 1
    return default_grader(workers).grade_many(pairs, workers=workers)
