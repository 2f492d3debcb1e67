"""CodeGrader: a fast, sandboxed, deterministic binary grader for untrusted programs.

    import grader
    verdict = grader.grade(program, task)            # -> Verdict
    verdicts = grader.grade_many(pairs, workers=2)   # in input order
    with grader.Grader(workers=2) as g:              # owns its fork servers
        verdicts = g.grade_many(pairs)

The reward is `verdict.reward`: 1.0 iff every test passed. The threat model is in
`grader.sandbox`; the comparison rules in `grader.compare`.
"""
from .core import Grader, grade, grade_many
from .sandbox import SandboxError, SandboxConfig
from .spec import TaskSpec, task_spec
from .verdict import Outcome, Verdict

__all__ = ["Grader", "Outcome", "SandboxError", "SandboxConfig", "TaskSpec", "Verdict",
           "grade", "grade_many", "task_spec"]
