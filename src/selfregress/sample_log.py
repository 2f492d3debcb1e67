"""The sampled-programs artifact: every sampled reply beside the program extracted from it and its verdict.

A chat model answers in prose around fenced code, so a failed sample has two possible culprits:
the model's code, or the extraction (``policy.extract_program``) taking the wrong part of the
reply. Only both side by side tell them apart. ``evaluate`` logs ``samples.jsonl`` on its run; a
chain's campaign run logs ``samples/train.jsonl``, every RL step's batch (under ``accelerate
launch``, the main process's share). One JSON object per line:

    {"step": 3, "task_id": "HumanEval/12", "sample": 1, "reply": "...", "program": "...",
     "outcome": "wrong_answer", "reward": 0.0, "first_failed_test": 2, "stderr_tail": "..."}

(``step`` only in a chain's file; ``stderr_tail`` cut to its last ``STDERR_CHARS`` characters.)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

STDERR_CHARS = 500
TRAIN_ARTIFACT = "samples/train.jsonl"
EVAL_ARTIFACT = "samples.jsonl"


def sample_lines(tasks: Sequence, per_task: int, replies: Sequence[str], programs: Sequence[str],
                 verdicts: Sequence, **extra) -> list[dict]:
    """One dict per sample; row i answers ``tasks[i // per_task]``. ``extra`` goes first on every line."""
    if not len(replies) == len(programs) == len(verdicts) == len(tasks) * per_task:
        raise ValueError(f"{len(tasks)} tasks x {per_task} samples, but {len(replies)} replies, "
                         f"{len(programs)} programs and {len(verdicts)} verdicts")
    return [{**extra, "task_id": tasks[i // per_task].task_id, "sample": i % per_task, "reply": reply,
             "program": program, "outcome": verdict.outcome.value, "reward": verdict.reward,
             "first_failed_test": verdict.first_failed_test,
             "stderr_tail": verdict.stderr_tail[-STDERR_CHARS:]}
            for i, (reply, program, verdict) in enumerate(zip(replies, programs, verdicts))]


def log_lines(run, lines: list[dict], artifact: str) -> None:
    """Write ``lines`` as JSON Lines to ``artifact`` (a path inside the run's artifacts) on ``run``."""
    folder, name = (artifact.rsplit("/", 1) if "/" in artifact else (None, artifact))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        with path.open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        run.log_artifact(path, folder)
