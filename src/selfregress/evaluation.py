"""Held-out evaluation: sample, extract, grade, and the pass@k estimator.

``pass_at_1`` here is the mean reward over tasks x samples, sampled at the training
temperature: it is exactly the quantity the RL objective moves, and the paper's metric.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfregress import metric_keys as K


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
               K.EVAL_TRIALS: float(self.trials)}
        for k in (2, 4, 8, 16):
            if k <= self.samples:
                out[f"pass_at_{k}"] = self.pass_at(k)
        return out


def evaluate(policy, tasks: Sequence, grader, *, samples: int, temperature: float,
             max_new_tokens: int, seed: int, top_p: float = 1.0, chunk: int = 256) -> EvalResult:
    """pass@1 of ``policy`` on ``tasks``: ``samples`` completions per task, graded by ``grader``.

    Grading overlaps sampling: ``sample`` reports each completion as its row ends, and a
    thread grades everything reported so far in one ``grade_many`` while the decode loop
    goes on (the grader's workers are other processes, so on two cores the grading costs
    the sampler nothing). The samples, and so the verdicts, are those of sampling first and
    grading after: only the order in which programs reach the grader differs.
    """
    from selfregress.policy import build_prompt
    from selfregress.sampling import sample

    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    per_chunk = max(1, chunk // samples)
    with _OverlappedGrading(grader, tasks, samples) as grading:
        for i in range(0, len(prompts), per_chunk):
            offset = i * samples                                   # first output row of the chunk
            sample(policy, prompts[i:i + per_chunk], n=samples, temperature=temperature,
                   top_p=top_p, max_new_tokens=max_new_tokens, seed=seed + i,
                   on_finished=lambda rows, texts, offset=offset: grading.add(
                       [offset + r for r in rows], texts))
    passed = np.array(grading.passed, dtype=bool)
    successes = passed.reshape(len(tasks), samples).sum(axis=1)
    return EvalResult(successes=successes, samples=samples, programs=grading.programs, passed=passed)


class _OverlappedGrading:
    """Grades (row, text) pairs on a background thread, batching whatever has arrived.

    Row j answers ``tasks[j // samples]``. ``add`` only queues; the thread takes everything
    queued, extracts the programs and grades them in one ``grade_many``, then looks again.
    Leaving the ``with`` block waits for the last verdict and re-raises a grading error.
    """

    def __init__(self, grader, tasks: Sequence, samples: int):
        self.grader, self.tasks, self.samples = grader, tasks, samples
        total = len(tasks) * samples
        self.programs: list[str] = [""] * total
        self.passed: list[bool] = [False] * total
        self.graded = 0
        self.queue: "queue.SimpleQueue[tuple[list[int], list[str]] | None]" = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="evaluation-grading", daemon=True)

    def __enter__(self) -> "_OverlappedGrading":
        self.thread.start()
        return self

    def add(self, rows: list[int], texts: list[str]) -> None:
        self.queue.put((rows, texts))

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        if exc_info[0] is None:
            if self.error is not None:
                raise self.error
            if self.graded != len(self.passed):
                raise RuntimeError(f"evaluation graded {self.graded} of {len(self.passed)} completions")

    def _run(self) -> None:
        from selfregress.policy import extract_program

        done = False
        while not done:
            batch = [self.queue.get()]                               # wait for the first
            while not self.queue.empty():
                batch.append(self.queue.get())
            done = batch[-1] is None
            rows = [r for item in batch if item is not None for r in item[0]]
            texts = [x for item in batch if item is not None for x in item[1]]
            if not rows or self.error is not None:
                continue
            try:
                programs = [extract_program(text) for text in texts]
                verdicts = self.grader.grade_many(
                    [(p, self.tasks[r // self.samples]) for p, r in zip(programs, rows)])
            except BaseException as error:                          # raised by __exit__
                self.error = error
                continue
            for r, program, verdict in zip(rows, programs, verdicts):
                self.programs[r], self.passed[r] = program, verdict.passed
            self.graded += len(rows)
