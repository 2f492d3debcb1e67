"""Tasks: the synthetic testbed generator, dataset loaders, and the JSONL task schema.

    from selfregress.tasks import synthetic_splits, load_tasks, read_jsonl, write_jsonl
    splits = synthetic_splits(seed=0)      # .pretrain / .rl / .eval / .test, disjoint
    tasks = load_tasks("apps:/data/apps/test.jsonl", limit=100)

CLI: ``python -m selfregress.tasks export --source SOURCE --out T.jsonl``.
"""

from selfregress.tasks.schema import Task, TaskError, read_jsonl, write_jsonl
from selfregress.tasks.sources import KNOWN, LoadOptions, load_tasks, resolve_tasks
from selfregress.tasks.synthetic import SPLITS, Splits, SyntheticConfig, synthetic_splits, synthetic_tasks

__all__ = ["Task", "TaskError", "read_jsonl", "write_jsonl", "load_tasks", "resolve_tasks", "LoadOptions", "KNOWN",
           "Splits", "SyntheticConfig", "SPLITS", "synthetic_splits", "synthetic_tasks"]
