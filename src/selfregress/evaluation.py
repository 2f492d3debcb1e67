"""Held-out evaluation: sample, extract, grade, and the pass@k estimator.

``pass_at_1`` here is the mean reward over tasks x samples, sampled at the training
temperature: it is exactly the quantity the RL objective moves, and the paper's metric.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
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
    replies: list[str] = field(default_factory=list)   # (n_tasks * samples,) the sampled texts
    verdicts: list = field(default_factory=list)       # (n_tasks * samples,) grader.Verdict

    @property
    def trials(self) -> int:
        return int(self.successes.size * self.samples)

    @property
    def pass_at_1(self) -> float:
        return float(self.successes.sum() / max(self.trials, 1))

    def log_samples(self, run, tasks: Sequence) -> None:
        """Log the sampled-programs artifact (``sample_log``) on ``run``: each reply, program, verdict."""
        from selfregress.sample_log import EVAL_ARTIFACT, log_lines, sample_lines

        log_lines(run, sample_lines(tasks, self.samples, self.replies, self.programs, self.verdicts), EVAL_ARTIFACT)

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

    Grading overlaps sampling where torch leaves a core free (``_a_core_to_spare``): ``sample``
    reports each completion as its row ends, and a thread grades everything reported so far
    while the decode loop goes on (the grader's workers are other processes). Where torch runs
    on every core, each chunk is graded whole once it is sampled: on 2 cores with 2 torch
    threads the many small overlapped batches cost more than they hid (a 128 x 2 evaluation
    took 1.17-1.54 s overlapped, 0.86-1.20 s sampled then graded). The samples, and so the
    verdicts, are the same either way: only the order in which programs reach the grader differs.

    A ``sandbox_error`` is retried once and, if it persists, raises ``grading.SandboxFailure``
    (``check=False``: counted in ``unresolved`` instead, for a caller that gathers the counts of
    several processes before failing).
    """
    from selfregress.grading import fail_if_unresolved
    from selfregress.policy import build_prompt
    from selfregress.sampling import sample

    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in tasks]
    per_chunk = max(1, chunk // samples)
    overlap = _a_core_to_spare()
    with _OverlappedGrading(grader, tasks, samples) as grading, policy.autocast():   # bf16 or nothing
        for i in range(0, len(prompts), per_chunk):
            offset = i * samples                                   # first output row of the chunk
            out = sample(policy, prompts[i:i + per_chunk], n=samples, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, seed=seed + i,
                         on_finished=(lambda rows, texts, offset=offset: grading.add(
                             [offset + r for r in rows], texts)) if overlap else None)
            if not overlap:    # the chunk graded whole, while the next one samples
                grading.add(list(range(offset, offset + len(out))), out.texts)
    if check:
        fail_if_unresolved("evaluation", grading.sandbox_errors, grading.unresolved,
                           len(grading.passed), grading.detail)
    passed = np.array(grading.passed, dtype=bool)
    successes = passed.reshape(len(tasks), samples).sum(axis=1)
    return EvalResult(successes=successes, samples=samples, programs=grading.programs, passed=passed,
                      sandbox_errors=grading.sandbox_errors, unresolved=grading.unresolved,
                      sandbox_detail=grading.detail, replies=grading.replies, verdicts=grading.verdicts)


def _a_core_to_spare() -> bool:
    import os

    import torch

    return torch.get_num_threads() < len(os.sched_getaffinity(0))


class _OverlappedGrading:
    """Grades (row, text) pairs on a background thread, batching whatever has arrived.

    Row j answers ``tasks[j // samples]``. ``add`` only queues; the thread takes everything
    queued, extracts the programs and grades them in one ``grade_retrying`` (a
    ``sandbox_error`` graded once more), then looks again. Leaving the ``with`` block waits for
    the last verdict and re-raises a grading error.
    """

    def __init__(self, grader, tasks: Sequence, samples: int):
        self.grader, self.tasks, self.samples = grader, tasks, samples
        total = len(tasks) * samples
        self.programs: list[str] = [""] * total
        self.passed: list[bool] = [False] * total
        self.replies: list[str] = [""] * total
        self.verdicts: list = [None] * total
        self.graded = 0
        self.sandbox_errors = self.unresolved = 0
        self.detail = ""
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
                graded = grade_retrying(self.grader, [(p, self.tasks[r // self.samples])
                                                      for p, r in zip(programs, rows)])
            except BaseException as error:                          # raised by __exit__
                self.error = error
                continue
            self.sandbox_errors += graded.sandbox_errors
            self.unresolved += graded.unresolved
            self.detail = self.detail or graded.detail
            for r, text, program, verdict in zip(rows, texts, programs, graded.verdicts):
                self.programs[r], self.passed[r] = program, verdict.passed
                self.replies[r], self.verdicts[r] = text, verdict
            self.graded += len(rows)
