"""The sandbox: fork servers inside bubblewrap, and the rlimit-only fallback.

THIS RUNS UNTRUSTED, MODEL-WRITTEN CODE. What follows is what it protects, how, and what it does
not protect.

Shape: one server per worker. Inside it, a supervisor (`_server.py`, PID 1 of the sandbox)
talks to this process over pipes, compiles each program (syntax errors never fork) and
enforces the wall clock; a zygote (`_runner.py`) forks one child per program, which runs all
of the program's tests with fresh globals each. Verdicts are decided here, in `judge.py`.

Threat model
------------
The adversary is the program text: arbitrary Python, including ctypes, fork/exec, signals,
files and sockets, written by a policy that is rewarded for passing and may learn to cheat.

Protected, with the mechanism:
- Verdict integrity (no false pass). Expected outputs never enter the sandbox: this process
  compares. The child gets the program and the test inputs only, so patching builtins, print or
  sys.stdout, forging result records or killing the runner can at most change the program's
  own output; its records are parsed as untrusted data. A process killed mid-test fails that
  test. A task with no tests is refused.
- Test-code tasks (the benchmark's own test code, `_testcode.py`). The test code must run in
  the sandbox, so it runs in a process of its own that the program cannot reach: the program
  runs in a process forked *before* the test code and a per-run nonce are read, with every
  channel to the supervisor closed; values cross between the two as plain built-ins only. A
  pass needs the nonce, which the test process writes after the test code's last statement:
  exiting early, equality-faking objects and patched builtins cannot produce it.
- Other programs' verdicts. Each program runs in its own forked child, in a fresh empty
  working directory; everything it leaves behind (processes, files in /tmp) is removed before
  the next program starts. Verdicts use CPU time (per-test timers, RLIMIT_CPU as a hard
  backstop), so load on the machine does not flip them. The per-test limit counts user time
  (ITIMER_VIRTUAL); user+system time (ITIMER_PROF, RLIMIT_CPU) only a looser backstop that
  also allows faulting in the memory cap (`_runner.cpu_timer`), since kernel time (page
  faults) grows with memory contention. The wall clock is only a backstop, per test, at
  `wall_factor` x time_limit_s + `wall_slack_s` + the same memory allowance. Hash seed and
  `random` are fixed.
- The host. With bubblewrap: new pid, net, ipc, uts (and cgroup) namespaces; no network (a
  private loopback only); a filesystem of read-only binds of the interpreter and /usr/lib only
  (no /home, /root, /etc, working trees, host /tmp, not even /bin/sh); a private, size-capped
  /tmp; an empty environment; no capabilities; no_new_privs.
- Fork bombs and exhaustion. rlimits on CPU time, address space, processes (NPROC), file size
  (the output cap: stdout and stderr are memfds, so it applies to them too), open files; no
  core dumps. RLIMIT_NPROC is not enforced for uid 0, and bwrap run as root with
  `--unshare-user --uid 65534` still maps to host uid 0, so as root the server runs bwrap
  without a user namespace and drops to a per-server unprivileged uid (`SANDBOX_UID_BASE` + the
  bwrap pid) before anything is forked: the limit holds, and it is counted per server, so one
  program's fork bomb cannot starve a program in another worker. Without root, bwrap makes a
  user namespace (nested ones disabled) and the limit is counted inside it.
- The grader. The supervisor is PID 1 of its pid namespace: the kernel drops a child's
  SIGKILL/SIGSTOP to it, and it handles no signal a child could send. It is non-dumpable, so a
  same-uid child cannot ptrace it or read /proc/1. The zygote is a subreaper: orphans and
  setsid daemons come back to it, and kill(-1) then reaches every leftover in the namespace and
  nothing outside it. A program can kill the zygote (its parent): that program gets
  RUNTIME_ERROR and the supervisor starts a new zygote. If a whole server dies, the program it
  was running gets SANDBOX_ERROR, programs queued behind it are re-run, the server restarts.

Not protected:
- Kernel exploits: the sandbox shares the host kernel and installs no seccomp filter. As root
  (no user namespace) a program can still create a user namespace of its own, which widens the
  kernel attack surface.
- Aggregate memory: each process may map `memory_mb`, so the worst case per program is about
  nproc x memory_mb, plus memfd and /tmp data bounded by the output cap x open files and the
  /tmp size. There is no cgroup.
- CPU contention: a spinning fork bomb slows the machine. It never changes another program's
  CPU-time verdict, except for a program within some tens of percent of its limit: CPU time
  itself grows under cache/SMT contention, in any grader.
- Programs whose output depends on time, addresses, os.urandom or threads' scheduling are not
  deterministic.
- The rlimit-only fallback (no bubblewrap) keeps the rlimits, the per-program fork, the
  process cleanup and, as root, the unprivileged uid. It gives NO filesystem, network or IPC
  isolation, and, when not root, programs run as the grader's own user and can signal that
  user's processes. It is for development only, and says so loudly.
"""
from __future__ import annotations

import marshal
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import _runner, _server, _testcode, _values

SANDBOX_UID_BASE = 2_000_000_000  # + a host pid: unique per live server, unused by real users
# What runs in the sandbox: both halves as one `python -c` script (the package is not there).
_SERVER_SOURCE = "\n".join(Path(module.__file__).read_text()
                           for module in (_values, _runner, _testcode, _server))
_WARNING = """
==============================================================================
WARNING: grader is running WITHOUT bubblewrap ({reason}).
Untrusted programs run under rlimits only: no filesystem, network or IPC
isolation{nonroot}. Install bubblewrap (apt-get install -y bubblewrap).
==============================================================================
"""
_warned = False
_warn_lock = threading.Lock()


@dataclass(frozen=True)
class SandboxConfig:
    """Sandbox settings that are the same for every task (per-task limits come from the task)."""

    nproc: int = 16
    """RLIMIT_NPROC: processes and threads per program (the server counts as one)."""
    nofile: int = 64
    """RLIMIT_NOFILE for the program."""
    min_output_bytes: int = 256 << 10
    """Output cap floor; the cap is max(this, 2 x expected output + 64 KiB)."""
    wall_factor: float = 3.0
    """Wall-clock backstop per test = wall_factor x time_limit_s + wall_slack_s, plus the CPU
    backstop's allowance for faulting in the memory cap (`_runner.FAULT_S_PER_MB` x memory_mb)."""
    wall_slack_s: float = 1.0
    """Added to the per-test wall-clock backstop."""
    tmp_bytes: int = 64 << 20
    """Size of the sandbox's private /tmp (bwrap only)."""
    start_timeout_s: float = 60.0
    """How long a server may take to start."""
    pin_cpus: bool = True
    """With a worker per CPU (or more), pin server i and its programs to CPU i mod n."""


class SandboxError(RuntimeError):
    """The sandbox could not start, or a server died or stopped answering."""


def warn_fallback(reason: str) -> None:
    """Print the loud rlimit-only warning, once per process."""
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    nonroot = "" if os.geteuid() == 0 else ", and programs run as your own user"
    sys.stderr.write(_WARNING.format(reason=reason, nonroot=nonroot))
    sys.stderr.flush()


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def _python_command() -> list[str]:
    python = os.path.realpath(sys.executable)
    # -S: stdlib only (no site-packages from the host or a venv); -s: no user site; -B: no .pyc
    # writes; -P (3.11+): the working directory is not on sys.path.
    flags = ["-S", "-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
    return [python, *flags, "-c", _SERVER_SOURCE]


def _interpreter_paths() -> list[str]:
    """Host paths the interpreter needs: its prefix (stdlib, libpython) and shared libraries."""
    python = os.path.realpath(sys.executable)
    paths = ["/usr/lib", "/usr/lib64", "/usr/lib32"]
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}:
        if prefix not in ("/usr", "/"):
            paths.append(prefix)
    if not any(python.startswith(p + "/") for p in paths):
        paths.append(python)  # e.g. /usr/bin/python3.11: the binary alone, not all of /usr/bin
    return [p for p in paths if os.path.exists(p)]


def bwrap_command(bwrap: str, config: SandboxConfig) -> list[str]:
    """The bubblewrap command line that starts one fork server."""
    as_root = os.geteuid() == 0
    argv = [bwrap, "--unshare-pid", "--as-pid-1", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            # No --die-with-parent: its PR_SET_PDEATHSIG fires when the *thread* that started
            # bwrap exits. The supervisor exits on EOF of its request pipe instead, which
            # happens when this process closes it or dies.
            "--new-session", "--clearenv",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PYTHONUTF8", "1",
            # Resolve every symbol once, at start: lazy binding would write the GOT in each
            # forked child (13 of its ~310 page faults, measured).
            "--setenv", "LD_BIND_NOW", "1"]
    if as_root:
        # No user namespace (see the threat model); the server drops to an unprivileged uid
        # itself, so it keeps only the two capabilities it needs for that.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
                 "--disable-userns"]
    made = {"/"}
    for path in _interpreter_paths():
        # bwrap creates missing parents 0700-ish; make them traversable for the sandbox uid.
        parents = list(Path(path).parents)[::-1][1:]
        for parent in map(str, parents):
            if parent not in made:
                argv += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        argv += ["--ro-bind", path, path]
        made.add(path)
    for link in ("/lib", "/lib64", "/lib32"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link) and link not in made:
            argv += ["--ro-bind", link, link]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(config.tmp_bytes), "--tmpfs", "/tmp",
             "--chdir", "/tmp", "--"]
    return argv + _python_command()


def _count_own_processes() -> int:
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                count += os.stat(f"/proc/{name}").st_uid == uid
            except OSError:
                pass
    return count


class ServerProcess:
    """One fork server: started once, then one request/reply per program, over pipes.

    The pipes are non-blocking on our side, so that `batch.run` can keep several servers busy
    (and a request queued behind the running one) from a single thread.
    """

    def __init__(self, mode: str, config: SandboxConfig, bwrap: str | None = None,
                 cpu: int | None = None):
        assert mode in ("bwrap", "rlimit-only")
        self.mode, self.config, self.bwrap, self.cpu = mode, config, bwrap, cpu
        self._proc: subprocess.Popen | None = None
        self._workroot: str | None = None
        self._outbox = bytearray()  # frames not yet written to the server
        self._inbox = bytearray()   # bytes of replies not yet complete

    # -- lifecycle
    def start(self) -> None:
        as_root = os.geteuid() == 0
        self._stderr = tempfile.TemporaryFile()
        if self.mode == "bwrap":
            argv, cwd, env = bwrap_command(self.bwrap, self.config), "/", {}
        else:
            # tmpfs when there is one: a disk-backed rmdir per program is slow.
            shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
            self._workroot = tempfile.mkdtemp(prefix="grader-", dir=shm)
            os.chmod(self._workroot, 0o711)  # the child's uid must reach its workdir
            argv, cwd = _python_command(), self._workroot
            env = {"PYTHONHASHSEED": "0", "PYTHONUTF8": "1", "LD_BIND_NOW": "1"}
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, cwd=cwd, env=env, close_fds=True,
                                      start_new_session=True)  # no terminal ^C to the server
        self.write_fd, self.read_fd = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        os.set_blocking(self.write_fd, False)
        os.set_blocking(self.read_fd, False)
        self._outbox.clear()
        self._inbox.clear()
        uid = SANDBOX_UID_BASE + self._proc.pid
        if self.mode == "bwrap":
            config = {"server_uid": uid if as_root else None, "child_uid": None,
                      "subreaper": False, "workroot": "/tmp", "nproc": self.config.nproc}
        else:
            nproc = self.config.nproc if as_root else _count_own_processes() + self.config.nproc
            config = {"server_uid": None, "child_uid": uid if as_root else None,
                      "subreaper": True, "workroot": self._workroot, "nproc": nproc}
        config["nofile"], config["cpu"] = self.config.nofile, self.cpu
        try:
            ready = self.call(marshal.dumps(config), self.config.start_timeout_s)
        except SandboxError as exc:
            detail = self._stderr_text() or str(exc)
            self.close()
            raise SandboxError(f"{self.mode} sandbox failed to start: {detail}") from None
        if not ready.startswith(_server.READY):
            self.close()
            raise SandboxError(f"{self.mode} sandbox sent an unexpected greeting")
        self.info = marshal.loads(ready[len(_server.READY):])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()  # EOF: the server exits, and with it its pid namespace
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._stderr.close()
        if self._workroot is not None:
            shutil.rmtree(self._workroot, ignore_errors=True)
            self._workroot = None

    def restart(self) -> None:
        self.close()
        self.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def host_pids(self) -> set[int]:
        """Host pids of this server's own processes (bwrap, supervisor, zygote), for tests."""
        if self._proc is None:
            return set()
        pids = {self._proc.pid}
        depth = 3 if self.mode == "bwrap" else 2
        for _ in range(depth - 1):
            for name in os.listdir("/proc"):
                try:
                    stat = Path(f"/proc/{name}/stat").read_bytes()
                except OSError:
                    continue
                if int(stat.rsplit(b")", 1)[1].split()[1]) in pids and name.isdigit():
                    pids.add(int(name))
        return pids

    # -- framed, non-blocking I/O (used by batch.run)
    def send(self, payload: bytes) -> None:
        """Queue one frame; `flush` writes it as the pipe accepts it."""
        self._outbox += _server.FRAME.pack(len(payload))
        self._outbox += payload

    @property
    def wants_write(self) -> bool:
        return bool(self._outbox)

    def flush(self) -> None:
        try:
            written = os.write(self.write_fd, self._outbox)
        except BlockingIOError:
            return
        except OSError as exc:  # EPIPE: the server is gone
            raise SandboxError(f"sandbox server died ({exc.strerror})") from None
        del self._outbox[:written]

    def receive(self) -> list[bytes]:
        """Read what is available; return the complete reply frames."""
        try:
            chunk = os.read(self.read_fd, 1 << 20)
        except BlockingIOError:
            return []
        if not chunk:
            raise SandboxError("sandbox server died")
        self._inbox += chunk
        frames = []
        while len(self._inbox) >= 4:
            (size,) = struct.unpack_from("<I", self._inbox)
            if len(self._inbox) < 4 + size:
                break
            frames.append(bytes(self._inbox[4:4 + size]))
            del self._inbox[:4 + size]
        return frames

    def call(self, payload: bytes, timeout_s: float) -> bytes:
        """Send one frame and wait for one reply (start-up handshake)."""
        self.send(payload)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(f"sandbox server did not answer within {timeout_s:.0f} s")
            writers = [self.write_fd] if self.wants_write else []
            readable, writable, _ = select.select([self.read_fd], writers, [], remaining)
            if writable:
                self.flush()
            if readable:
                frames = self.receive()
                if frames:
                    return frames[0]

    def _stderr_text(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
