"""A chain's task splits as MLflow datasets: a content digest each, logged with a context.

Reads: lists of tasks (``Task`` or schema dicts). Writes: the run's dataset inputs
(``mlflow.log_input``-style: one ``DatasetInput`` per split, tagged ``mlflow.data.context``),
which the UI shows in the runs table's Datasets column and on the run page.

The digest is ``sha256`` over the canonical JSON of the tasks (their schema dicts, in order,
keys sorted, no whitespace), so that the same tasks give the same digest on any machine and a
changed test, statement or order gives another. MLflow stores a dataset digest in 36
characters at most, so the dataset carries the first ``DIGEST_CHARS`` hex digits (64 bits:
a chance collision needs ~4e9 distinct splits) and the input tag ``selfregress.sha256`` the
whole hash. ``split_digests`` gives the same short digests for the config hash.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Iterable, Mapping

CONTEXTS = ("rl", "selection", "report", "test")   # what each split is for (DESIGN.md: Splits)
CONTEXT_TAG = "mlflow.data.context"                # MLflow's own input tag for the context
SHA256_TAG = "selfregress.sha256"
DIGEST_CHARS = 16


def task_dicts(tasks: Iterable) -> list[dict]:
    """The schema dicts of ``Task`` objects (dicts pass through unchanged)."""
    return [t if isinstance(t, Mapping) else t.to_dict() for t in tasks]


def tasks_sha256(tasks: Iterable) -> str:
    """sha256 hex of the canonical JSON of the tasks, in their order."""
    canonical = json.dumps(task_dicts(tasks), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def split_digests(splits: Mapping[str, Iterable]) -> dict[str, str]:
    """context -> the short digest of its tasks, for the config hash (same order as given)."""
    return {context: tasks_sha256(tasks)[:DIGEST_CHARS] for context, tasks in splits.items()}


def tasks_dataset(tasks: Iterable, name: str, source: str = "synthetic"):
    """An MLflow ``PandasDataset`` of the tasks: one row per task, the tests as JSON text.

    ``source`` says where the tasks come from (a task file's path, or ``synthetic``); the
    digest is ours (see the module docstring), not MLflow's hash of the frame.
    """
    import mlflow.data
    import pandas as pd

    dicts = task_dicts(tasks)
    frame = pd.DataFrame({
        "task_id": [d["task_id"] for d in dicts],
        "prompt": [d["prompt"] for d in dicts],
        "starter_code": [d.get("starter_code") or "" for d in dicts],
        "fn_name": [d.get("fn_name") or "" for d in dicts],
        "tests": [json.dumps(d["tests"], sort_keys=True) for d in dicts],
        "difficulty": ["" if d.get("difficulty") is None else str(d["difficulty"]) for d in dicts],
        "source": [d.get("source", "") for d in dicts],
    })
    return mlflow.data.from_pandas(frame, source=_source(source), name=name,
                                   digest=tasks_sha256(dicts)[:DIGEST_CHARS])


def _source(source: str):
    """A task file as a local-file source; ``synthetic`` (or a named source) as a code source."""
    from pathlib import Path

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if Path(source).exists():
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(Path(source).resolve()))
    return CodeDatasetSource(tags={"selfregress.task_source": source})


def log_splits(splits: Mapping[str, Iterable], run_id: str | None = None, source: str = "synthetic",
               client=None) -> dict[str, str]:
    """Log each split as a dataset input of the run, with its context; return split_digests.

    ``splits``: context (one of ``CONTEXTS``) -> tasks. ``run_id``: default the active run.
    ``client``: an ``MlflowClient`` (default one on the current tracking URI). Datasets are
    named ``<source>/<context>`` so that the same split of two sources never shares a name.
    """
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    unknown = sorted(set(splits) - set(CONTEXTS))
    if unknown:
        raise ValueError(f"unknown split context {unknown[0]!r}: use {', '.join(CONTEXTS)}")
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("log_splits needs a run_id or an active run")
        run_id = active.info.run_id
    client = client or mlflow.MlflowClient()
    label = "synthetic" if source == "synthetic" else source.rstrip("/").rsplit("/", 1)[-1]
    inputs = []
    for context, tasks in splits.items():
        dicts = task_dicts(tasks)
        dataset = tasks_dataset(dicts, f"{label}/{context}", source)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                   tags=[InputTag(CONTEXT_TAG, context), InputTag(SHA256_TAG, tasks_sha256(dicts))]))
    client.log_inputs(run_id, datasets=inputs)
    return split_digests(splits)
