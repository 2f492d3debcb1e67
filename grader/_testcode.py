"""Run a benchmark's own test code against a program, in two processes (stdlib only).

Runs inside the sandbox, in the child the zygote forked for one program (`_runner.py`). That
child forks the *program process* first, and only then reads the test code and a per-run
nonce from SECRET_FD: the program process never holds them, not even in memory it could scan.
The program process closes every channel to the supervisor (records, stdout, the secret),
runs the program, then serves calls. The *test process* runs the test code in a fresh
namespace of its own; each name the test code does not define itself (the entry point, a
helper it calls) becomes a proxy that calls the program's function by name (a module the
program imported, such as MBPP's `math`, is imported afresh in the test process). Arguments and
results cross as plain built-in values (`_values.py`): an object with its own `__eq__`
cannot cross, so it never reaches an assert.

Why two processes: in one process the program could patch what the test code uses (builtins,
math.isclose, `check`), forge the result record, or exit with status 0 before the asserts
ran. Here it can do all of that only to itself. The test process writes the nonce, as its
proof that the test code ran to its end, only after the last statement of the test code; the
program process has neither the nonce nor a channel to write it on.

Verdicts (the test process's record; the judge trusts a pass only with the right nonce):
an AssertionError raised by the test code is ST_WRONG (with its line in the test code); any
other exception, or the program raising, exiting or dying, is ST_EXCEPTION; a result that is
not a plain built-in value is ST_BAD_RETURN; MemoryError is ST_MEMORY; the program process
killed by its CPU timer is ST_TIMEOUT.
"""
import builtins
import marshal
import os
import signal
import struct
import sys

try:  # imported as part of the grader package (the parent only reads constants)
    from grader._runner import (ERR_FD, OUT_FD, REC_FD, RECORD, SECRET_FD, ST_BAD_RETURN,
                                ST_EXCEPTION, ST_MEMORY, ST_OK, ST_OUTPUT, ST_TIMEOUT, ST_WRONG,
                                arm_timers, disarm_timers, fresh_main, print_exception,
                                read_exact, write_all)
    from grader._values import decode, encode
except ImportError:  # inside the sandbox these files are one script
    pass

NONCE_BYTES = 16
TEST_FILE = "test.py"  # co_filename of the test code: its frames name the failing line
_FRAME = struct.Struct("<I")
_TIMER_SIGNALS = (signal.SIGVTALRM, signal.SIGPROF, signal.SIGXCPU)


def run_test_code(code, timer):
    """The test process: fork the program process, run the test code, record. Never returns."""
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (requests_w, replies_r, REC_FD, OUT_FD, SECRET_FD):
            os.close(fd)
        _serve_program(code, requests_r, replies_w, timer)
    os.close(requests_r)
    os.close(replies_w)
    os.dup2(ERR_FD, 1)  # what the test code prints goes to the stderr tail
    os.dup2(ERR_FD, 2)
    secret = os.pread(SECRET_FD, 1 << 26, 0)
    os.close(SECRET_FD)
    nonce, test_code = secret[:NONCE_BYTES], marshal.loads(secret[NONCE_BYTES:])
    link = _Link(pid, requests_w, replies_r)
    status, line = ST_OK, 0
    arm_timers(timer)
    try:
        try:
            link.expect_ready()
            exec(test_code, _Namespace(link, __name__="__test__", __builtins__=builtins))
        except _Abort as abort:
            status, line = abort.status, _test_line(sys.exc_info()[2])
            try:
                os.write(ERR_FD, ("grader: %s\n" % abort.why).encode("utf-8", "replace"))
            except OSError:  # stderr is past the output cap
                pass
        except MemoryError:
            status = ST_MEMORY
        except BaseException as exc:
            remote = getattr(type(exc), "_raised_by_program", False)
            status = ST_WRONG if isinstance(exc, AssertionError) and not remote else ST_EXCEPTION
            line = _test_line(sys.exc_info()[2])
            print_exception()
    except _Abort as abort:  # an _Abort raised while handling another exception
        status = abort.status
    if status == ST_OK and link.failure is not None:  # the test code caught it (`except:`)
        status = link.failure.status
    cpu_us = disarm_timers(timer)
    write_all(OUT_FD, nonce if status == ST_OK else b"%d" % line)
    os.write(REC_FD, RECORD.pack(0, status, os.fstat(OUT_FD).st_size, cpu_us))
    os._exit(0)


def _test_line(tb):
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEST_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _Abort(BaseException):
    """The program failed in a way the test code must not catch (not an Exception)."""

    def __init__(self, status, why):
        BaseException.__init__(self, why)
        self.status, self.why = status, why


class _Namespace(dict):
    """The test code's globals: a name it does not define, and that is not a builtin, is
    looked up in the program (a callable becomes a proxy; a plain value is copied)."""

    def __init__(self, link, **names):
        dict.__init__(self, **names)
        self.link = link

    def __missing__(self, name):
        if name in builtins.__dict__:
            raise KeyError(name)  # the builtin, from this process's own, untouched module
        kind, value = self.link.ask(b"G", (name,))
        if kind == b"C":
            value = _proxy(self.link, name)
        elif kind == b"I":  # a module the program imported (MBPP's `math`): our own copy of it
            try:
                module = __import__(value)
                for part in value.split(".")[1:]:  # os.path: __import__ returns os
                    module = getattr(module, part)
                value = module
            except (ImportError, AttributeError):
                raise KeyError(name) from None
        elif kind != b"V":
            raise KeyError(name)
        self[name] = value
        return value


def _proxy(link, name):
    def call(*args, **kwargs):
        return link.ask(b"K", (name, args, kwargs))[1]
    call.__name__ = call.__qualname__ = name
    return call


_remote_classes = {}


def _remote_exception(name, message):
    """An exception of the program's type where that is a builtin one (so that the test
    code's `except ValueError` works), marked as raised by the program."""
    base = builtins.__dict__.get(name)
    if not (isinstance(base, type) and issubclass(base, Exception)):
        base = Exception
    kind = _remote_classes.get((name, base))
    if kind is None:
        kind = _remote_classes[(name, base)] = type(name, (base,), {"_raised_by_program": True})
    return kind(message)


class _Link:
    """The test process's end of the pipes to the program process."""

    def __init__(self, pid, write_fd, read_fd):
        self.pid, self.write_fd, self.read_fd = pid, write_fd, read_fd
        self.failure = None  # the first _Abort: it stands even if the test code catches it

    def _abort(self, status, why):
        abort = _Abort(status, why)
        if self.failure is None:
            self.failure = abort
        return abort

    def _receive(self):
        try:
            size = _FRAME.unpack(read_exact(self.read_fd, 4))[0]
            return read_exact(self.read_fd, size)
        except (EOFError, OSError):
            raise self._program_ended() from None

    def _program_ended(self):
        if self.failure is not None:  # already reaped
            return self._abort(self.failure.status, self.failure.why)
        _, status = os.waitpid(self.pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in _TIMER_SIGNALS:
            return self._abort(ST_TIMEOUT, "the program ran out of CPU time")
        return self._abort(ST_EXCEPTION, "the program exited or died before the test code ended")

    def expect_ready(self):
        reply = self._receive()
        if reply[:1] != b"R":
            self._fail(reply, "the program failed before the test code ran")

    def ask(self, op, payload):
        try:
            request = _frame(op + encode(payload))
        except TypeError as exc:
            raise TypeError("grader: cannot pass this argument to the program: %s" % exc) from None
        try:
            write_all(self.write_fd, request)
        except OSError:
            raise self._program_ended() from None
        reply = self._receive()
        kind, body = reply[:1], reply[1:]
        if kind in (b"V", b"E"):
            try:
                value = decode(body)
            except ValueError:
                raise self._abort(ST_BAD_RETURN, "the program sent a malformed value") from None
            if kind == b"E":
                name, message = value if type(value) is tuple and len(value) == 2 else ("", "")
                raise _remote_exception(str(name), str(message))
            return kind, value
        if kind in (b"C", b"U"):
            return kind, None
        if kind == b"I":
            return kind, body.decode("utf-8", "replace")
        self._fail(reply, "the program failed during the test code")

    def _fail(self, reply, why):
        kind = reply[:1]
        if kind == b"W":
            raise self._abort(ST_BAD_RETURN, "the program returned a %s, not a plain built-in "
                              "value" % reply[1:80].decode("utf-8", "replace"))
        status = {b"M": ST_MEMORY, b"O": ST_OUTPUT}.get(kind, ST_EXCEPTION)
        raise self._abort(status, why)


def _frame(payload):
    return _FRAME.pack(len(payload)) + payload


# --------------------------------------------------------------------------- program process
def _serve_program(code, requests_fd, replies_fd, timer):
    """The program process: run the program, then answer calls until EOF. Never returns."""
    me = os.getpid()
    stdin = os.memfd_create("stdin")  # an empty stdin; stdout and stderr go to stderr's memfd
    for fd, target in ((stdin, 0), (ERR_FD, 1), (ERR_FD, 2)):
        if fd != target:
            os.dup2(fd, target)
    namespace = fresh_main()
    arm_timers(timer)
    reply = _guarded(me, lambda: exec(code, namespace) or b"R")
    write_all(replies_fd, _frame(reply))
    while reply[:1] not in (b"X", b"M", b"O"):  # after these the program is done
        try:
            request = read_exact(requests_fd, _FRAME.unpack(read_exact(requests_fd, 4))[0])
        except EOFError:
            break
        op, payload = request[:1], decode(request[1:])
        if op == b"G":
            reply = _lookup(namespace, payload[0])
        else:
            name, args, kwargs = payload
            function = namespace.get(name)
            reply = _guarded(me, lambda: _result(function(*args, **kwargs)))
        write_all(replies_fd, _frame(reply))
    os._exit(0)


def _lookup(namespace, name):
    if name not in namespace:
        return b"U"
    value = namespace[name]
    if type(value) is type(sys):
        return b"I" + value.__name__.encode("utf-8", "surrogatepass")
    if callable(value):
        return b"C"
    return _result(value)


def _result(value):
    try:
        return b"V" + encode(value)
    except (TypeError, RecursionError):
        return b"W" + type(value).__name__.encode("utf-8", "replace")


def _guarded(me, action):
    """Run the program's code; its outcome as a reply."""
    try:
        reply = action()
    except MemoryError:
        reply = b"M"
    except SystemExit:
        reply = b"X"
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG: past the output cap
            reply = b"O"
        else:
            print_exception()
            try:
                reply = b"E" + encode((type(exc).__name__, str(exc)[:500]))
            except BaseException:
                reply = b"E" + encode(("Exception", ""))
    if os.getpid() != me:  # a process the program forked came back here
        os._exit(0)
    return reply
