"""The grader's result type: a closed set of outcomes and the verdict that carries one."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(str, enum.Enum):
    """What happened to a program. Only PASSED earns reward."""

    PASSED = "passed"              # every test's output matched
    WRONG_ANSWER = "wrong_answer"  # a test's output (or return value) did not match
    RUNTIME_ERROR = "runtime_error"  # uncaught exception, non-zero exit, or killed by a signal
    TIMEOUT = "timeout"            # a test used more than time_limit_s of user CPU (or hung: wall clock)
    MEMORY_LIMIT = "memory_limit"  # MemoryError under the address-space limit
    OUTPUT_LIMIT = "output_limit"  # stdout/stderr/file writes past the output cap
    SYNTAX_ERROR = "syntax_error"  # did not compile; nothing was run
    SANDBOX_ERROR = "sandbox_error"  # the grader could not grade it (never the program's doing)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    first_failed_test: int | None  # index into task tests (test code: the failing line, or 0);
    #                                None if passed or nothing ran
    run_time_s: float              # CPU seconds the program used, all tests together
    stderr_tail: str               # last ~2 KB of stderr (tracebacks, diagnostics)
    sandbox: str                   # "bwrap" or "rlimit-only"

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    @property
    def reward(self) -> float:
        """The binary RL reward: 1.0 iff every test passed."""
        return 1.0 if self.outcome is Outcome.PASSED else 0.0
