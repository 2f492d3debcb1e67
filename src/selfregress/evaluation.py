"""Held-out evaluation: sample, extract, grade, and the pass@k estimator.

``pass_at_1`` here is the mean reward over tasks x samples, sampled at the training
temperature: it is exactly the quantity the RL objective moves, and the paper's metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfregress import metric_keys as K
from selfregress.grading import grade_retrying


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021, "Codex", eq. 1).

        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

    The product form avoids huge binomials. Requires 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass(frozen=True)
class EvalResult:
    successes: np.ndarray        # (n_tasks,) passing samples per task
    samples: int                 # samples per task
    programs: list[str]          # (n_tasks * samples,) task-major, for re-grading audits
    passed: np.ndarray           # (n_tasks * samples,) bool
    sandbox_errors: int = 0      # sandbox_error verdicts on the first try, each retried once (grading.py)
    unresolved: int = 0          # still sandbox_error after the retry (0 unless evaluate(check=False))
    sandbox_detail: str = ""     # the grader's message for the first unresolved one

    @property
    def trials(self) -> int:
        return int(self.successes.size * self.samples)

    @property
    def pass_at_1(self) -> float:
        return float(self.successes.sum() / max(self.trials, 1))

    def pass_at(self, k: int) -> float:
        """Mean unbiased pass@k over tasks."""
        return float(np.mean([pass_at_k(self.samples, int(c), k) for c in self.successes]))

    def metrics(self) -> dict[str, float]:
        out = {K.PASS_AT_1: self.pass_at_1, K.EVAL_SUCCESSES: float(self.successes.sum()),
               K.EVAL_TRIALS: float(self.trials), K.SANDBOX_ERRORS: float(self.sandbox_errors)}
        for k in (2, 4, 8, 16):
            if k <= self.samples:
                out[f"pass_at_{k}"] = self.pass_at(k)
        return out


def evaluate(policy, tasks: Sequence, grader, *, samples: int, temperature: float,
             max_new_tokens: int, seed: int, top_p: float = 1.0, chunk: int = 256,
             check: bool = True) -> EvalResult:
    """pass@1 of ``policy`` on ``tasks``: ``samples`` completions per task, graded by ``grader``.

    A ``sandbox_error`` is retried once and, if it persists, raises ``grading.SandboxFailure``
    (``check=False``: counted in ``unresolved`` instead, for a caller that gathers the counts of
    several processes before failing).
    """
    from selfregress.policy import build_prompt, extract_program
    from selfregress.sampling import sample

    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    per_chunk = max(1, chunk // samples)
    programs: list[str] = []
    for i in range(0, len(prompts), per_chunk):
        batch = sample(policy, prompts[i:i + per_chunk], n=samples, temperature=temperature,
                       top_p=top_p, max_new_tokens=max_new_tokens, seed=seed + i)
        programs.extend(extract_program(text) for text in batch.texts)
    pairs = [(program, tasks[j // samples]) for j, program in enumerate(programs)]
    graded = grade_retrying(grader, pairs)
    if check:
        graded.check("evaluation")
    passed = np.array([v.passed for v in graded.verdicts], dtype=bool)
    successes = passed.reshape(len(tasks), samples).sum(axis=1)
    return EvalResult(successes=successes, samples=samples, programs=programs, passed=passed,
                      sandbox_errors=graded.sandbox_errors, unresolved=graded.unresolved,
                      sandbox_detail=graded.detail)
