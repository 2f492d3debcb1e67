"""Decide a verdict from what the sandbox reported. Pure: bytes in, Verdict out.

Everything in the reply that came from the program child (result records, stdout, stderr) is
untrusted: it is parsed with bounds checks and can only ever make the program fail. A test
passes only when its output slice matches the expected output, which the child never saw.
"""
from __future__ import annotations

import signal

from . import _runner as child
from . import _server as wire
from .compare import json_matches, stdout_matches
from .spec import TaskSpec
from .verdict import Outcome, Verdict

# per-test user-time timer, its user+system backstop, soft RLIMIT_CPU
_TIMEOUT_SIGNALS = {signal.SIGVTALRM, signal.SIGPROF, signal.SIGXCPU}
_TEST_CODE_OUTCOMES = {child.ST_WRONG: Outcome.WRONG_ANSWER, child.ST_BAD_RETURN: Outcome.WRONG_ANSWER,
                       child.ST_MEMORY: Outcome.MEMORY_LIMIT, child.ST_TIMEOUT: Outcome.TIMEOUT,
                       child.ST_OUTPUT: Outcome.OUTPUT_LIMIT}


def output_cap(spec: TaskSpec, min_output_bytes: int) -> int:
    """Bytes a program may write (stdout, stderr, any file): generous, but bounded."""
    return max(min_output_bytes, 2 * spec.output_bytes + (64 << 10))


def judge(spec: TaskSpec, reply: bytes, sandbox: str, out_cap: int, nonce: bytes = b"") -> Verdict:
    """The verdict for one program, from the server's reply (see `_server.REPLY`).

    Test-code tasks (`nonce` is the run's proof): PASSED needs the test process's ST_OK record
    with exactly the nonce as its output. An exit status, or a record without the nonce, is
    never a pass. `first_failed_test` is then the line of the test code that failed (or 0).
    """
    (flags, term_signal, exit_code, cpu_s, _wall_s, n_records, n_out, out_size, err_size,
     n_err) = wire.REPLY.unpack_from(reply)
    offset = wire.REPLY.size
    records = reply[offset:offset + n_records]
    out = reply[offset + n_records:offset + n_records + n_out]
    tail = reply[offset + n_records + n_out:][:n_err].decode("utf-8", "replace")
    capped = out_size >= out_cap or err_size >= out_cap

    def verdict(outcome, test=None, note=""):
        return Verdict(outcome, test, round(cpu_s, 6), tail + note, sandbox)

    if flags & wire.FLAG_SYNTAX:
        return verdict(Outcome.SYNTAX_ERROR)

    if spec.test_code is not None and len(records) >= child.RECORD.size:
        _, status, end, _cpu_us = child.RECORD.unpack_from(records)
        if status == child.ST_OK:
            if nonce and out[:end] == nonce and end == len(nonce):
                return verdict(Outcome.PASSED)
            return verdict(Outcome.RUNTIME_ERROR, 0, "\ngrader: no proof that the test code ended\n")
        text = out[:min(end, 12)]
        line = int(text) if text.isdigit() else 0
        if capped and status == child.ST_EXCEPTION:
            return verdict(Outcome.OUTPUT_LIMIT, line)
        return verdict(_TEST_CODE_OUTCOMES.get(status, Outcome.RUNTIME_ERROR), line)

    n_tests, previous_end = len(spec.inputs), 0
    usable = min(len(records) // child.RECORD.size, n_tests)
    for test in range(usable):
        index, status, end, _cpu_us = child.RECORD.unpack_from(records, test * child.RECORD.size)
        if index != test or not previous_end <= end <= len(out):
            return verdict(Outcome.RUNTIME_ERROR, test)  # corrupt (forged) result record
        actual, previous_end = out[previous_end:end], end
        if status in (child.ST_OK, child.ST_EXITED):
            if end >= out_cap:
                return verdict(Outcome.OUTPUT_LIMIT, test)
            if not _matches(spec, test, actual):
                return verdict(Outcome.WRONG_ANSWER, test)
        elif status == child.ST_MEMORY:
            return verdict(Outcome.MEMORY_LIMIT, test)
        elif capped or status == child.ST_OUTPUT:
            return verdict(Outcome.OUTPUT_LIMIT, test)
        elif status == child.ST_BAD_RETURN:
            return verdict(Outcome.WRONG_ANSWER, test)
        else:  # exception, non-zero exit, or an unknown (forged) status
            return verdict(Outcome.RUNTIME_ERROR, test)
    if usable == n_tests:
        return verdict(Outcome.PASSED)

    # The child died during test `usable`, before recording it.
    test = usable
    if flags & wire.FLAG_PARENT_KILLED:
        return verdict(Outcome.RUNTIME_ERROR, test, "\ngrader: the program killed its parent\n")
    if (flags & (wire.FLAG_WALL_KILLED | wire.FLAG_CPU_RLIMIT)
            or term_signal in _TIMEOUT_SIGNALS):
        return verdict(Outcome.TIMEOUT, test)
    if term_signal == signal.SIGXFSZ or capped:
        return verdict(Outcome.OUTPUT_LIMIT, test)
    if exit_code == child.SETUP_FAILED and "grader: child set-up failed" in tail:
        return verdict(Outcome.SANDBOX_ERROR, test)
    return verdict(Outcome.RUNTIME_ERROR, test)


def _matches(spec: TaskSpec, test: int, actual: bytes) -> bool:
    if spec.fn_name is not None:
        return json_matches(actual, spec.expected[test], spec.float_tol)
    text = actual.decode("utf-8", "surrogateescape")
    return stdout_matches(text, spec.expected[test], spec.float_tol)
