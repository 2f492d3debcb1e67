"""Grading for training and evaluation: a ``sandbox_error`` is never a silent reward 0.

A ``sandbox_error`` verdict means the grader could not grade the program (a sandbox server died
or hung, a child's set-up failed), never that the program failed. Counted as reward 0 it would
bias pass@1 down and train on a false signal, and it used to go uncounted. Here every such
verdict is counted (``grader/sandbox_errors``), its program is graded once more, and if any is
still a ``sandbox_error`` the caller fails the step with ``SandboxFailure``: one line naming the
count; the run is closed FAILED with everything logged before it, and the chain can resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from grader import Outcome, Verdict

from selfregress.errors import UserError


class SandboxFailure(UserError):
    """Programs the sandbox could not grade, even on a retry."""


@dataclass(frozen=True)
class Graded:
    verdicts: list[Verdict]   # in input order, a retried program's second verdict in its place
    sandbox_errors: int       # sandbox_error verdicts on the first try (each was retried once)
    unresolved: int           # still sandbox_error after the retry

    @property
    def detail(self) -> str:
        """The grader's own message of the first unresolved program ('' if none)."""
        return next((v.stderr_tail for v in self.verdicts if v.outcome is Outcome.SANDBOX_ERROR), "")

    def check(self, what: str) -> None:
        """Raise ``SandboxFailure`` if any program is still ungraded."""
        fail_if_unresolved(what, self.sandbox_errors, self.unresolved, len(self.verdicts), self.detail)


def grade_retrying(grader, pairs: Sequence[tuple[str, object]]) -> Graded:
    """Grade (program, task) pairs; the ones that get ``sandbox_error`` are graded once more."""
    verdicts = list(grader.grade_many(pairs))
    failed = [i for i, v in enumerate(verdicts) if v.outcome is Outcome.SANDBOX_ERROR]
    if failed:
        for i, verdict in zip(failed, grader.grade_many([pairs[i] for i in failed])):
            verdicts[i] = verdict
    unresolved = sum(verdicts[i].outcome is Outcome.SANDBOX_ERROR for i in failed)
    return Graded(verdicts, len(failed), unresolved)


def fail_if_unresolved(what: str, sandbox_errors: int, unresolved: int, total: int, detail: str = "") -> None:
    """The one-line error of a step whose programs the sandbox could not grade (nothing if none)."""
    if unresolved:
        reason = next((line.strip() for line in reversed(detail.splitlines()) if line.strip()), "")
        raise SandboxFailure(
            f"{what}: the grader's sandbox failed on {unresolved} of {total} programs even on a retry "
            f"({sandbox_errors} sandbox_error verdicts on the first try{': ' + reason if reason else ''}); "
            "this is the grader, not the policy, so the step is not trained or scored on a false 0: "
            "fix the sandbox (python -m grader, see grader/sandbox.py) and resume the chain")
