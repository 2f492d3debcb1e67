"""The supervisor half of the sandbox: PID 1 of the sandbox, talks to the grader over pipes.

Runs inside the sandbox, stdlib only; `sandbox.py` starts `python -S -c <_runner.py +
this file>`. The parent also imports it, for the wire constants.

Per program the supervisor compiles the source (a syntax error costs no fork, and the grader's
own process never parses untrusted code), hands the program to the zygote (`_runner.py`),
enforces the wall-clock backstop, collects what the child wrote, cleans up, and replies.

Protocol with the parent (both sides trusted):
  parent -> supervisor   u32 length + marshal(dict)   a config frame, then one per program
  supervisor -> parent   u32 length + payload          READY + info, then one REPLY each
A REPLY is the REPLY header, then the raw records, stdout and stderr tail the child wrote.
Those bytes are untrusted; the parent parses them defensively (judge.py).
"""
import builtins
import gc
import marshal
import os
import select
import signal
import struct
import sys
import time

try:  # imported as part of the grader package
    from grader._runner import (DONE, ERR_FD, OUT_FD, REC_FD, RECORD, SECRET_FD, ST_EXITED,
                                ST_OK, cpu_rlimit, cpu_timer, descendants, prepare_children,
                                read_exact, sweep, write_all, zygote)
    from grader._testcode import TEST_FILE
except ImportError:  # inside the sandbox, _runner.py's source was prepended to this one
    pass

# Reply header: flags, term signal, exit code, cpu s, wall s, sizes of records/stdout/stderr.
REPLY = struct.Struct("<IiiddIIIII")
FLAG_WALL_KILLED, FLAG_CPU_RLIMIT, FLAG_SYNTAX, FLAG_PARENT_KILLED = 1, 2, 4, 8
FRAME = struct.Struct("<I")
READY = b"READY"
ERR_TAIL_BYTES = 2048
_HIGH_FD = 100  # the supervisor's own fds live here, clear of the child's 0-5
_ZYGOTE_GRACE_S = 5.0
_PROGRESS_CHECK_S = 0.5  # while a child runs long, how often to look for finished tests
_COMPILE_CACHE = 1024

# Preloaded so that a program's `import` is a dict lookup in the child. Not `threading`: its
# at-fork hook runs Python code in every child. `random` is preloaded too, apart, without its
# at-fork hook (see _import_random), so that each child can seed it to a constant.
PRELOAD = ("math", "collections", "itertools", "functools", "heapq", "bisect", "re", "string",
           "operator", "json", "copy", "array", "resource", "fcntl", "atexit")


def _libc_prctl(option, value):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


class Supervisor:
    def __init__(self, config, reply_fd, parent_fds):
        self.config, self.reply_fd, self.parent_fds = config, reply_fd, parent_fds
        self.pid_namespace = os.getpid() == 1
        self.compiled = {}  # source -> marshalled code or syntax error message
        _open_channels()
        self._spawn_zygote()

    # -- the zygote
    def _spawn_zygote(self):
        import fcntl
        command_r, command_w = os.pipe()
        report_r, report_w = os.pipe()
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD) for fd in
               (command_r, command_w, report_r, report_w)]
        for fd in (command_r, command_w, report_r, report_w):
            os.close(fd)
        command_r, command_w, report_r, report_w = fds
        pid = os.fork()
        if pid == 0:
            for fd in (command_w, report_r, *self.parent_fds):
                os.close(fd)
            _libc_prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of programs come to us
            _libc_prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            zygote(command_r, report_w, self.pid_namespace)
        os.close(command_r)
        os.close(report_w)
        self.zygote_pid, self.command_fd, self.report_fd = pid, command_w, report_r

    def shutdown(self):
        """Let the zygote read EOF and exit, and reap it: no zombie left to the host's init."""
        os.close(self.command_fd)
        try:
            os.waitpid(self.zygote_pid, 0)
        except ChildProcessError:
            pass

    def _zygote_died(self):
        """Kill everything but ourselves, reap it all, start a new zygote.

        The new zygote is forked from us: drop the test code we hold first, so that its
        programs cannot find it in memory (freed heap blocks may still hold old bytes).
        """
        self.compiled = {key: code for key, code in self.compiled.items()
                         if key[1] != TEST_FILE}
        os.close(self.command_fd)
        os.close(self.report_fd)
        if self.pid_namespace:
            sweep(True)  # as PID 1, kill(-1) spares only us
        else:
            for pid in descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            sweep(False)
        self._spawn_zygote()

    def _run_child(self, blob, test_wall_s):
        """One child via the zygote: (wait status, CPU s, wall-killed, parent-killed).

        The wall-clock backstop is per test: it restarts whenever the child records a test.
        """
        try:
            write_all(self.command_fd, FRAME.pack(len(blob)) + blob)
        except BrokenPipeError:  # the zygote was killed from outside between programs
            self._zygote_died()
            write_all(self.command_fd, FRAME.pack(len(blob)) + blob)
        poller = select.poll()
        poller.register(self.report_fd, select.POLLIN)
        killed, recorded = False, os.fstat(REC_FD).st_size
        deadline = time.monotonic() + test_wall_s
        while True:
            wake = min(deadline, time.monotonic() + _PROGRESS_CHECK_S)
            if poller.poll(max(0, int((wake - time.monotonic()) * 1000))):
                report = os.read(self.report_fd, DONE.size)
                if len(report) == DONE.size:
                    _, status, cpu_s, _ = DONE.unpack(report)
                    return status, cpu_s, killed, False
                self._zygote_died()  # the program killed it ("killing its parent")
                return 0, 0.0, killed, True
            if killed:
                if time.monotonic() >= deadline:  # no report even after the kill: replace it
                    os.kill(self.zygote_pid, signal.SIGKILL)
                continue
            size = os.fstat(REC_FD).st_size
            if size != recorded:  # a test finished: the next one gets its own backstop
                recorded, deadline = size, time.monotonic() + test_wall_s
            if time.monotonic() < deadline:
                continue
            # Wall-clock backstop (sleeps, blocking reads, a process stopped by a signal).
            killed = True
            for pid in descendants(self.zygote_pid):
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            deadline = time.monotonic() + _ZYGOTE_GRACE_S

    # -- one program
    def compile(self, source, filename="main.py"):
        """Marshalled code, or the SyntaxError message as str. Cached: RL batches repeat."""
        code = self.compiled.get((source, filename))
        if code is None:
            try:
                code = marshal.dumps(compile(source, filename, "exec", dont_inherit=True))
            except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
                code = "%s: %s" % (type(exc).__name__, exc)
            if len(self.compiled) >= _COMPILE_CACHE:
                self.compiled.pop(next(iter(self.compiled)))  # oldest first
            self.compiled[(source, filename)] = code
        return code

    def grade(self, request):
        code = self.compile(request["source"])
        if isinstance(code, str):
            message = code.encode("utf-8", "replace")
            return self._reply(FLAG_SYNTAX, 0, 0, 0.0, 0.0, b"", b"", 0, 0, message)
        _reset_channels()
        test_code = request.get("test_code")
        if test_code is not None:
            # The test process reads this only after it has forked the program's process.
            test_code = self.compile(test_code, TEST_FILE)
            if isinstance(test_code, str):  # the parent checked it parses; never the program's doing
                raise RuntimeError("test code does not compile: " + test_code)
            os.pwrite(SECRET_FD, request["nonce"] + test_code, 0)
        workdir = os.path.join(self.config["workroot"], "w")
        os.mkdir(workdir, 0o700)
        child_uid = self.config["child_uid"]
        if child_uid is not None:
            os.chown(workdir, child_uid, child_uid)
        n_tests, cpu_limit_s = len(request["inputs"]), request["cpu_limit_s"]
        started = time.monotonic()
        flags, cpu_s, start = 0, 0.0, 0
        while True:
            blob = marshal.dumps((code, request["fn_name"], request["inputs"], start,
                                  cpu_limit_s, request["memory_bytes"], request["out_cap"],
                                  workdir, child_uid, self.config["nofile"],
                                  self.config["nproc"], test_code is not None))
            status, child_cpu_s, killed, parent_killed = self._run_child(blob,
                                                                         request["test_wall_s"])
            cpu_s += child_cpu_s
            flags |= FLAG_WALL_KILLED if killed else 0
            if parent_killed:
                # How far the program got before we killed it is a race: keep only the
                # records of earlier runs, so the verdict is the same every time.
                flags |= FLAG_PARENT_KILLED
                os.ftruncate(REC_FD, start * RECORD.size)
            term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
            exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
            cpu_hard = cpu_rlimit(cpu_timer(cpu_limit_s, request["memory_bytes"]),
                                  n_tests - start)  # as set by the child
            if term_signal == signal.SIGKILL and child_cpu_s >= cpu_hard - 0.05:
                flags |= FLAG_CPU_RLIMIT
            # os._exit(0) during a test ends the child before it writes that test's record.
            # The test is done (its output is in the memfd): record it, resume with the next.
            next_index = _records_end(start)
            if (flags or term_signal or exit_code or next_index is None
                    or next_index >= n_tests or test_code is not None):
                break
            os.pwrite(REC_FD, RECORD.pack(next_index, ST_EXITED, os.fstat(OUT_FD).st_size, 0),
                      os.fstat(REC_FD).st_size)
            start = next_index + 1
            if start >= n_tests:
                break
        wall_s = time.monotonic() - started
        rec_size = min(os.fstat(REC_FD).st_size, RECORD.size * (n_tests + 1))
        out_size, err_size = os.fstat(OUT_FD).st_size, os.fstat(ERR_FD).st_size
        tail_from = max(0, err_size - ERR_TAIL_BYTES)
        self._clean_workroot()
        self._reply(flags, term_signal, exit_code, cpu_s, wall_s, _pread(REC_FD, rec_size),
                    _pread(OUT_FD, min(out_size, request["out_cap"])), out_size, err_size,
                    _pread(ERR_FD, err_size - tail_from, tail_from))

    def _reply(self, flags, term_signal, exit_code, cpu_s, wall_s, records, out, out_size,
               err_size, err_tail):
        header = REPLY.pack(flags, term_signal, exit_code, cpu_s, wall_s,
                            len(records), len(out), out_size, err_size, len(err_tail))
        payload = b"".join((header, records, out, err_tail))
        write_all(self.reply_fd, FRAME.pack(len(payload)) + payload)

    def _clean_workroot(self):
        root = self.config["workroot"]  # a program may have written anywhere it can
        for name in os.listdir(root):
            path = os.path.join(root, name)
            try:
                os.rmdir(path)
            except OSError:
                _remove_tree(path)


def _open_channels():
    """memfds for records, stdout, stderr and the secret at fds 3-6, inherited by the zygote
    and its children (a child closes the secret unless it runs test code)."""
    for fd, name in ((REC_FD, "rec"), (OUT_FD, "out"), (ERR_FD, "err"), (SECRET_FD, "secret")):
        memfd = os.memfd_create(name)
        if memfd != fd:
            os.dup2(memfd, fd)
            os.close(memfd)


def _reset_channels():
    import fcntl
    os.ftruncate(SECRET_FD, 0)
    for fd in (REC_FD, OUT_FD, ERR_FD):
        os.ftruncate(fd, 0)
        # Appends land at the end even if a program seeks (the flag is shared, so re-set it).
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_APPEND)


def _records_end(start):
    """Index after the last test recorded, or None if the last record was a failure."""
    size = os.fstat(REC_FD).st_size
    if size < RECORD.size:
        return start
    index, status, _, _ = RECORD.unpack(
        os.pread(REC_FD, RECORD.size, size - size % RECORD.size - RECORD.size))
    if status not in (ST_OK, ST_EXITED):
        return None
    return max(start, index + 1)


def _pread(fd, size, offset=0):
    chunks = []
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _remove_tree(path):
    # A program may chmod its files to 000; as their owner (or root) we can undo that.
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
            return
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            _remove_tree(os.path.join(path, name))
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _exit_builtin(code=None):
    raise SystemExit(code)


def _import_random():
    """Import `random` without the at-fork hook it registers. The hook reseeds the global
    generator from urandom in every forked child, which is not deterministic and runs Python
    code in each one (6 of a child's ~310 page faults, measured). Each child seeds it to 0."""
    register_at_fork = os.register_at_fork
    os.register_at_fork = lambda **hooks: None
    try:
        import random  # noqa: F401  (kept in sys.modules)
    finally:
        os.register_at_fork = register_at_fork


def _prepare(config):
    """One-time set-up inside the sandbox, before any program runs."""
    if config["server_uid"] is not None:
        # bwrap started as root: become an unprivileged, per-server uid before anything is
        # forked. RLIMIT_NPROC is not enforced for uid 0, so this is what stops fork bombs.
        uid = config["server_uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if config["subreaper"]:
        _libc_prctl(PR_SET_CHILD_SUBREAPER, 1)
    if config["cpu"] is not None:
        # The supervisor, the zygote and every child on one CPU: a fork then write-protects
        # pages in one CPU's TLB only, and nothing migrates (about 15% more programs/s).
        os.sched_setaffinity(0, {config["cpu"]})
    _libc_prctl(PR_SET_DUMPABLE, 0)  # same-uid programs cannot ptrace us or read /proc/1/*
    # PID 1 ignores signals it has no handler for: restore SIGINT's default so that a program
    # cannot interrupt us. (SIGPIPE and SIGXFSZ stay ignored, as in any Python process.)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.environ.clear()  # children start with an empty environment
    sys.argv = ["main.py"]
    builtins.exit = builtins.quit = _exit_builtin  # what `site` would have added
    for name in PRELOAD:
        __import__(name)
    _import_random()
    prepare_children()
    gc.collect()
    gc.freeze()  # children's collections never scan (or copy on write) the server's objects


def main():
    import fcntl
    request_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    reply_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    config = marshal.loads(read_exact(request_fd, FRAME.unpack(read_exact(request_fd, 4))[0]))
    _prepare(config)
    supervisor = Supervisor(config, reply_fd, (request_fd, reply_fd))
    info = marshal.dumps({"pid": os.getpid(), "uid": os.getuid(), "version": sys.version,
                          "zygote": supervisor.zygote_pid})
    write_all(reply_fd, FRAME.pack(len(READY) + len(info)) + READY + info)
    while True:
        try:
            header = read_exact(request_fd, 4)
        except EOFError:
            break  # the parent closed the pipe: shut down (as PID 1 this ends the namespace)
        supervisor.grade(marshal.loads(read_exact(request_fd, FRAME.unpack(header)[0])))
    supervisor.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
