"""The forking half of the sandbox: the zygote process and the per-program child runner.

Runs inside the sandbox, so it uses the standard library only. `sandbox.py` starts the
sandbox's Python as `python -S -c <this file + _server.py>`; the parent imports it for the
constants.

Why a zygote: fork() write-protects every page of the forking process, and the forking
process then takes a page fault on each page it writes afterwards. The supervisor
(`_server.py`) does all the per-program bookkeeping, so it never forks programs itself: it
forks this zygote once, and the zygote does nothing per program but read a request, fork,
wait and sweep, touching very few pages.

The child never sees an expected output: whatever it does to its own process can only change
its own output. It reports through fds the supervisor set up: REC_FD (one RECORD per finished
test), OUT_FD (stdout, or the JSON return value for call-based tasks) and ERR_FD (stderr).
"""
import atexit
import builtins
import errno
import gc
import io
import json
import marshal
import os
import resource
import select
import signal
import struct
import sys

RECORD = struct.Struct("<IIII")  # test index, status, OUT_FD size after the test, CPU µs
(ST_OK, ST_EXCEPTION, ST_MEMORY, ST_EXIT_NONZERO, ST_BAD_RETURN, ST_EXITED, ST_OUTPUT, ST_WRONG,
 ST_TIMEOUT) = range(9)  # ST_WRONG, ST_TIMEOUT: test-code tasks only (_testcode.py)
REC_FD, OUT_FD, ERR_FD = 3, 4, 5
SECRET_FD = 6  # test-code tasks: the nonce and the test code, for the test process only
# The per-test limit counts user CPU time (ITIMER_VIRTUAL), which load barely changes. Kernel
# time is bounded only by a looser backstop on user+system time (ITIMER_PROF, RLIMIT_CPU):
# twice the limit, plus slack, plus the time to fault in the whole memory cap at
# FAULT_S_PER_MB. Page faults are kernel time and their cost grows with memory contention: on
# the 2-core CI machine kind, faulting 256 MB took 0.18 s idle, up to 0.51 s beside two
# page-faulting processes, and over 1.1 s (> 4.3 ms/MB) once in a CI run, where a memory bomb
# under a 0.3 s limit then read TIMEOUT. With the allowance it meets its memory cap first
# unless faulting costs over 10 ms/MB.
SYSTEM_FACTOR, SYSTEM_SLACK_S, FAULT_S_PER_MB = 2.0, 0.5, 0.01
SETUP_FAILED, RUNNER_FAILED = 70, 71  # child exit codes when our code, not the program, failed
DONE = struct.Struct("<iidq")  # zygote -> supervisor: child pid, wait status, CPU s, max RSS
_zygote_mapped = 0  # bytes of address space the zygote maps (set when it starts)
GC_ABOVE_KB = 32 << 10  # collect cycles between tests once the child's max RSS grew this much
RUNNER_FILE = "<string>"  # co_filename of this code inside the sandbox (python -c)


def read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --------------------------------------------------------------------------- the zygote
def zygote(command_fd, report_fd, pid_namespace):
    """Fork one child per request, wait for it, kill what it left behind. Never returns.

    Requests are u32 length + the child's marshalled arguments; each gets one DONE report.
    """
    global _zygote_mapped
    gc.disable()  # no collections here: they would write to (and fault in) every page
    with open("/proc/self/statm", "rb") as statm:
        _zygote_mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    while True:
        try:
            blob = read_exact(command_fd, struct.unpack("<I", read_exact(command_fd, 4))[0])
        except EOFError:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            os.close(command_fd)
            os.close(report_fd)
            run_program(blob)
        _, status, usage = os.wait4(pid, 0)
        sweep(pid_namespace)
        os.write(report_fd, DONE.pack(pid, status, usage.ru_utime + usage.ru_stime,
                                      usage.ru_maxrss))


def sweep(pid_namespace):
    """Kill and reap whatever the program left behind (orphans, setsid daemons).

    The caller is a child subreaper, so every leftover descendant becomes its child.
    """
    if pid_namespace:
        # kill(-1) reaches every process in our pid namespace except PID 1 (the supervisor)
        # and ourselves: exactly the leftovers. Nothing outside the namespace.
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                return
            while _reap(block=True):
                pass
    # rlimit-only fallback: no namespace, so kill(-1) would reach the host. Kill our own
    # descendants, found in /proc, until none is left.
    while True:
        reaped = _reap(block=False)
        if reaped == 0:
            return
        if reaped is None:  # still running
            for pid in descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            select.select([], [], [], 0.001)


def _reap(block):
    """Reap one child: its pid, None if children are still running (non-blocking), 0 if none."""
    try:
        pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return 0
    return pid or None


def descendants(root_pid):
    parent_of = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as stat:
                    parent_of[int(name)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], {root_pid}
    while frontier:
        frontier = {pid for pid, ppid in parent_of.items() if ppid in frontier}
        found.extend(frontier)
    return found


# --------------------------------------------------------------------------- the child
def run_program(blob):
    """Entry point of the forked child: set the limits, run the tests. Never returns."""
    try:
        (code, fn_name, inputs, start, cpu_limit_s, memory_bytes, out_cap, workdir, child_uid,
         nofile, nproc, test_code) = marshal.loads(blob)
        os.setpgid(0, 0)
        if child_uid is not None:  # rlimit-only fallback running as root
            os.setgroups([])
            os.setresgid(child_uid, child_uid, child_uid)
            os.setresuid(child_uid, child_uid, child_uid)
        os.closerange(SECRET_FD + 1, 1 << 20)
        if not test_code:
            os.close(SECRET_FD)
        # The program may map memory_bytes on top of the interpreter (the zygote, measured
        # once) and this request (marshalled into `blob`, which the child holds too).
        address_space = _zygote_mapped + 2 * len(blob) + memory_bytes
        timer = cpu_timer(cpu_limit_s, memory_bytes)
        cpu_s = cpu_rlimit(timer, len(inputs) - start)
        stack = resource.getrlimit(resource.RLIMIT_STACK)[0]  # keep the usual soft limit
        if stack == resource.RLIM_INFINITY or stack > address_space:
            stack = address_space
        limits = [  # (resource, soft, hard); a program can lower these, never raise them
            # Backstop for a program that disarms its per-test timer: all its tests' budget.
            (resource.RLIMIT_CPU, cpu_s, cpu_s),
            (resource.RLIMIT_AS, address_space, address_space),
            (resource.RLIMIT_STACK, stack, address_space),
            (resource.RLIMIT_FSIZE, out_cap, out_cap),  # also caps stdout/stderr (memfds)
            (resource.RLIMIT_NOFILE, nofile, nofile),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if nproc is not None:
            limits.append((resource.RLIMIT_NPROC, nproc, nproc))
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))
        os.chdir(workdir)
        code = marshal.loads(code)
        # Same verdict every run, for randomised programs too: the supervisor imported random
        # without its at-fork reseed from urandom, and every child starts from seed 0. (The C
        # seed directly: random.seed(0) would run Python code.)
        random = sys.modules["random"]
        type(random._inst).__mro__[-2].seed(random._inst, 0)
        gc.enable()
    except BaseException:
        os.write(ERR_FD, b"grader: child set-up failed\n")
        print_exception()
        os._exit(SETUP_FAILED)
    try:
        if test_code:
            run_test_code(code, timer)
        _run_tests(code, fn_name, inputs, start, timer)
    except BaseException:  # the runner itself broke, e.g. the program closed its fds
        print_exception()
    os._exit(RUNNER_FAILED)


def cpu_timer(cpu_limit_s, memory_bytes):
    """Per-test CPU seconds: (user, user+system). The second is the backstop: twice the
    limit, plus slack, plus the kernel time to fault in `memory_bytes` (FAULT_S_PER_MB)."""
    return cpu_limit_s, (SYSTEM_FACTOR * cpu_limit_s + SYSTEM_SLACK_S
                         + FAULT_S_PER_MB * memory_bytes / (1 << 20))


def cpu_rlimit(timer, n_tests):
    """RLIMIT_CPU (whole seconds, user+system) for a child that runs n_tests tests."""
    return int(timer[1] * n_tests) + 1


def arm_timers(timer):
    """Per-test CPU limits (see cpu_timer). Both timers' signals keep their default action
    (terminate), so they also fire inside a long C call."""
    signal.setitimer(signal.ITIMER_VIRTUAL, timer[0])
    signal.setitimer(signal.ITIMER_PROF, timer[1])


def disarm_timers(timer):
    """Stop both timers; the CPU microseconds (user+system) used since arm_timers."""
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    remaining = signal.setitimer(signal.ITIMER_PROF, 0)[0]
    return int(max(0.0, timer[1] - remaining) * 1e6) if remaining else 0


def fresh_main():
    """The program's __main__ globals, emptied: what a new module would start with."""
    namespace = _MAIN.__dict__
    namespace.clear()
    namespace.update(__name__="__main__", __doc__=None, __package__=None, __loader__=None,
                     __spec__=None, __file__="main.py", __builtins__=builtins)
    sys.modules["__main__"] = _MAIN
    return namespace


def prepare_children():
    """Set up, once in the supervisor, what every child would otherwise build for itself:
    building it in each fresh fork costs page faults. sys.stdout is a writer on fd 1 (the
    child points fd 1 at OUT_FD before writing)."""
    global _STDOUT, _MAIN, _SERVER_MAIN
    _STDOUT = io.open(1, "w", encoding="utf-8", errors="surrogateescape", newline="\n",
                      closefd=False)
    _SERVER_MAIN = sys.modules["__main__"]  # the supervisor's own script, kept alive
    # The program's __main__ module: emptied and refilled for every test (fresh globals).
    _MAIN = type(sys)("__main__")
    sys.modules["__main__"] = _MAIN
    # The interpreter's own stdin and stdout objects are freed here, once: a child replacing
    # them would free them (and write every page they live on) in every fork.
    sys.stdin = sys.__stdin__ = _Stdin("")
    sys.stdout = sys.__stdout__ = _STDOUT


_STDOUT = _MAIN = _SERVER_MAIN = None


class _Stdin(io.StringIO):
    """sys.stdin for one test: its input as text, `.buffer` as bytes, and fd 0 as a file.

    A StringIO is much cheaper to set up in a fresh fork than a TextIOWrapper on fd 0.
    """

    __slots__ = ("buffer",)

    def fileno(self):
        return 0


def _run_tests(code, fn_name, inputs, start, timer):
    call_mode = fn_name is not None
    gc_above_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + GC_ABOVE_KB
    dumps, loads = json.dumps, json.loads  # bound now: a program patching json cannot reach these
    me = os.getpid()
    stdout = _STDOUT  # made before the zygote forked: building one here costs page faults
    for index in range(start, len(inputs)):
        data = inputs[index]
        fd = os.memfd_create("stdin")  # fd 0 holds exactly this test's input, then EOF
        if not call_mode:
            if os.write(fd, data) < len(data):
                os.ftruncate(fd, 0)
                write_all(fd, data)
            os.lseek(fd, 0, 0)
        if fd != 0:  # 0 itself when the program closed fd 0 (e.g. open(0) was collected)
            os.dup2(fd, 0)
            os.close(fd)
        # Re-point fds 1 and 2 every test, in case the program closed or replaced them.
        os.dup2(ERR_FD if call_mode else OUT_FD, 1)
        os.dup2(ERR_FD, 2)
        if stdout is None or stdout.closed:
            stdout = io.open(1, "w", encoding="utf-8", errors="surrogateescape", newline="\n",
                             closefd=False)
        stdin = _Stdin("" if call_mode else data.decode("utf-8", "surrogateescape"))
        stdin.buffer = io.BytesIO(b"" if call_mode else data)
        sys.stdin = sys.__stdin__ = stdin
        sys.stdout = sys.__stdout__ = stdout
        namespace = fresh_main()
        status, returned = ST_OK, None
        arm_timers(timer)
        try:
            try:
                exec(code, namespace)
                if call_mode:
                    returned = _call(namespace, fn_name, loads(data))
                    try:  # serialise inside the timed region: a huge return value is slow
                        returned = dumps(returned).encode("utf-8", "surrogateescape")
                    except (TypeError, ValueError, RecursionError):
                        status = ST_BAD_RETURN
            except SystemExit as exc:
                status = _exit_status(exc)
            _forked_copy_exits(me, status)
            _finish_like_interpreter_exit(stdout)
        except SystemExit as exc:
            _forked_copy_exits(me, ST_OK)
            status = max(status, _exit_status(exc))
        except MemoryError:
            _forked_copy_exits(me, ST_MEMORY)
            namespace.clear()
            status = ST_MEMORY
        except BaseException as exc:
            _forked_copy_exits(me, ST_EXCEPTION)
            # A write past RLIMIT_FSIZE (SIGXFSZ is ignored, as in any Python) is EFBIG.
            too_big = isinstance(exc, OSError) and exc.errno == errno.EFBIG
            status = ST_OUTPUT if too_big else ST_EXCEPTION
            print_exception()
        cpu_us = disarm_timers(timer)
        if call_mode and status == ST_OK:
            if isinstance(returned, bytes):
                write_all(OUT_FD, returned)
            else:  # SystemExit(0) before the function returned
                status = ST_BAD_RETURN
        namespace.clear()
        os.write(REC_FD, RECORD.pack(index, status, os.fstat(OUT_FD).st_size, cpu_us))
        if status != ST_OK:
            break
        if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > gc_above_kb:
            # A big test: free its garbage cycles before the next one counts them against its
            # memory limit. (Small tests are left to the automatic collector: a full collection
            # in every fresh fork costs page faults.)
            gc.collect()
    os._exit(0)


def _forked_copy_exits(me, status):
    """A process the program forked has come back into the runner: end it like Python would."""
    if os.getpid() != me:
        try:
            sys.stdout.flush()
        finally:
            os._exit(0 if status == ST_OK else 1)


def _call(namespace, fn_name, args):
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, fn_name):
        function = getattr(solution(), fn_name)  # LeetCode style
    elif fn_name in namespace:
        function = namespace[fn_name]
    else:
        raise NameError("no function or Solution method named %r" % fn_name)
    return function(*args)  # a JSON list: task_spec checked it


def _exit_status(exc):
    if exc.code in (None, 0):
        return ST_OK
    if not isinstance(exc.code, int):
        os.write(ERR_FD, (str(exc.code) + "\n").encode("utf-8", "replace"))
    return ST_EXIT_NONZERO


def _finish_like_interpreter_exit(stdout):
    # What `python main.py` does when the module ends: join non-daemon threads, run atexit
    # functions, flush stdout.
    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    atexit._clear()
    if sys.stdout is not stdout and hasattr(sys.stdout, "flush"):
        sys.stdout.flush()  # the program installed its own writer
    if not stdout.closed:
        stdout.flush()
    _flush_stderr()


def _flush_stderr():
    # sys.stderr is the interpreter's own line-buffered writer on fd 2 (now ERR_FD).
    for stream in {id(sys.stderr): sys.stderr, id(sys.__stderr__): sys.__stderr__}.values():
        try:
            stream.flush()
        except BaseException:
            pass


def print_exception():
    """Write the current exception to stderr like the interpreter, without importing traceback
    (a cold import costs ~10 ms in every crashing child) and without the runner's frames."""
    kind, value, tb = sys.exc_info()
    _flush_stderr()  # what the program wrote comes before its traceback
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename != RUNNER_FILE:
            frames.append('  File "%s", line %d, in %s\n'
                          % (code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    if len(frames) > 12:  # deep recursion: keep both ends
        frames[4:-6] = ["  [... %d more frames ...]\n" % (len(frames) - 10)]
    try:
        message = str(value)
    except BaseException:
        message = "<exception str() failed>"
    text = "".join(["Traceback (most recent call last):\n"] + frames
                   + ["%s: %s\n" % (kind.__name__, message) if message else kind.__name__ + "\n"])
    try:
        os.write(ERR_FD, text.encode("utf-8", "replace"))
    except OSError:
        pass


try:  # imported as part of the grader package; inside the sandbox the files are one script
    from grader._testcode import run_test_code  # noqa: E402
except ImportError:
    pass
