"""Drive several fork servers from one thread: the loop behind Grader.grade_many.

Each server gets up to `depth` requests at once: while it runs one program, the next request
already sits in its pipe, so it never waits for us to judge the last reply. One thread and
select() instead of a thread per server: the judging is cheap, and threads would only fight
over the GIL.

If a server dies or hangs, only the program it was running fails (SANDBOX_ERROR). The
programs queued behind it go back to the front of the queue, and the server is restarted.
"""
from __future__ import annotations

import collections
import select
import time
from collections.abc import Callable

from .sandbox import SandboxError, ServerProcess

DEPTH = 2


class _Lane:
    """One server and the jobs sent to it, oldest (the running one) first."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.jobs: collections.deque[tuple[int, float]] = collections.deque()  # (job, timeout)
        self.head_since = time.monotonic()  # when the running job could have started
        self.usable = True

    def deadline(self) -> float:
        return self.head_since + self.jobs[0][1]


def run(servers: list[ServerProcess], n_jobs: int,
        prepare: Callable[[int], tuple[bytes, float]],
        finish: Callable[[int, bytes | SandboxError], None], depth: int = DEPTH) -> None:
    """Run jobs 0..n_jobs-1 on `servers`. prepare(i) -> (request, timeout_s); finish(i, reply).

    finish gets a SandboxError instead of a reply when the server failed on that job.
    """
    _Batch(servers, n_jobs, prepare, finish, depth).run()


class _Batch:
    def __init__(self, servers, n_jobs, prepare, finish, depth):
        self.lanes = [_Lane(server) for server in servers]
        self.queue = collections.deque(range(n_jobs))
        self.prepare, self._finish, self.depth = prepare, finish, depth
        self.prepared: dict[int, tuple[bytes, float]] = {}  # sent but not finished

    def run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException:
            # Interrupted mid-batch (e.g. ^C): replies still in flight would be read by the
            # next batch as its own, so these servers start afresh on their next use.
            for lane in self.lanes:
                if lane.jobs:
                    lane.server.close()
            raise

    def _step(self) -> bool:
        for lane in self.lanes:
            while lane.usable and self.queue and len(lane.jobs) < self.depth:
                job = self.queue.popleft()
                if job not in self.prepared:
                    self.prepared[job] = self.prepare(job)
                request, timeout_s = self.prepared[job]
                if not lane.jobs:
                    lane.head_since = time.monotonic()
                lane.server.send(request)
                lane.jobs.append((job, timeout_s))
        busy = [lane for lane in self.lanes if lane.jobs]
        if not busy:
            for job in self.queue:  # left over only if every server is unusable
                self.finish(job, SandboxError("no sandbox server could be started"))
            return False
        wait = max(0.0, min(lane.deadline() for lane in busy) - time.monotonic())
        readers = {lane.server.read_fd: lane for lane in busy}
        writers = {lane.server.write_fd: lane for lane in busy if lane.server.wants_write}
        readable, writable, _ = select.select(list(readers), list(writers), [], wait)
        for fd in writable:
            self._guard(writers[fd], lambda lane: lane.server.flush())
        for fd in readable:
            self._guard(readers[fd], self._take_replies)
        now = time.monotonic()
        for lane in busy:
            if lane.jobs and lane.usable and now > lane.deadline():
                self._fail(lane, SandboxError(
                    f"sandbox server hung: no reply within {lane.jobs[0][1]:.0f} s"))
        return True

    def finish(self, job: int, reply: bytes | SandboxError) -> None:
        self.prepared.pop(job, None)
        self._finish(job, reply)

    def _take_replies(self, lane: _Lane) -> None:
        for reply in lane.server.receive():
            job, _ = lane.jobs.popleft()
            lane.head_since = time.monotonic()
            self.finish(job, reply)

    def _guard(self, lane: _Lane, action) -> None:
        if not lane.jobs:
            return  # failed earlier in this step
        try:
            action(lane)
        except SandboxError as exc:
            self._fail(lane, exc)

    def _fail(self, lane: _Lane, error: SandboxError) -> None:
        """The running job fails; the ones queued behind it are re-run; the server restarts."""
        job, _ = lane.jobs.popleft()
        self.queue.extendleft(reversed([j for j, _ in lane.jobs]))
        lane.jobs.clear()
        self.finish(job, error)
        try:
            lane.server.restart()
            lane.head_since = time.monotonic()
        except SandboxError:
            lane.usable = False
