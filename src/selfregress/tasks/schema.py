"""The task schema (every task source is read into it) and its JSONL form.

One task per line:
    {"task_id", "prompt", "tests": [{"input", "output"}], "fn_name", "starter_code",
     "time_limit_s", "memory_mb", "source", "difficulty", "float_tol", "solutions", "test_code"}
``fn_name`` set means call-based tests: each input is a JSON list of arguments and each
output the JSON-encoded return value. Otherwise tests are stdin -> stdout. ``test_code`` set
means the third kind: the benchmark's own test code (HumanEval's ``check`` and its call, MBPP's
set-up code and asserts), which the program passes when it runs to its end; such a task has no
``tests`` (an empty list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from selfregress.errors import UserError


class TaskError(UserError, ValueError):
    """Bad task input (unknown source, missing file, malformed line): one line for the user."""


@dataclass(frozen=True)
class Task:
    """One programming problem with its tests and, when the source has them, references."""
    task_id: str                        # unique within a source, e.g. "apps/4012"
    prompt: str                         # the statement shown to the model
    tests: tuple[dict, ...]             # each {"input": str, "output": str}
    fn_name: str | None = None          # set: call-based tests (JSON args -> JSON result)
    starter_code: str | None = None     # code the answer must start from (signature), if any
    time_limit_s: float = 2.0           # CPU seconds per test
    memory_mb: int = 256                # address-space limit of the program
    source: str = "synthetic"           # which loader made it
    difficulty: str | int | None = None  # synthetic: the tier (number of composed operations)
    float_tol: float | None = None      # numeric tolerance for the grader, if the source has one
    solutions: tuple[str, ...] = ()     # reference programs (empty if the source has none)
    test_code: str | None = None        # set: the benchmark's own test code is the test

    def to_dict(self) -> dict:
        """The JSON-ready schema form (tuples become lists)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tests"] = [dict(t) for t in self.tests]
        d["solutions"] = list(self.solutions)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Task":
        """Validate a schema dict; raises TaskError naming the first bad key."""
        if not isinstance(d, dict):
            raise TaskError(f"a task must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - _FIELDS)
        if unknown:
            raise TaskError(f"unknown task key {unknown[0]!r}; known keys: {', '.join(sorted(_FIELDS))}")
        for key in ("task_id", "prompt", "tests"):
            if key not in d:
                raise TaskError(f"task is missing required key {key!r}")
        _check(d, "task_id", str, nonempty=True)
        _check(d, "prompt", str)
        tests = d["tests"]
        _check(d, "test_code", str, optional=True, nonempty=True)
        if d.get("test_code") is not None:
            if tests not in ([], ()):
                raise TaskError(f"task {d['task_id']!r}: a task with 'test_code' has no 'tests' "
                                "(write \"tests\": [])")
        elif not isinstance(tests, (list, tuple)) or not tests:
            raise TaskError(f"task {d['task_id']!r}: 'tests' must be a non-empty list of "
                            '{"input": str, "output": str}')
        for i, t in enumerate(tests):
            if not (isinstance(t, dict) and set(t) == {"input", "output"}
                    and isinstance(t["input"], str) and isinstance(t["output"], str)):
                raise TaskError(f"task {d['task_id']!r}: tests[{i}] must be exactly "
                                '{"input": str, "output": str}')
        for key in ("fn_name", "starter_code"):
            _check(d, key, str, optional=True)
        _check(d, "source", str)
        _check(d, "time_limit_s", (int, float), positive=True)
        _check(d, "memory_mb", int, positive=True)
        _check(d, "float_tol", (int, float), optional=True)
        _check(d, "difficulty", (str, int), optional=True)
        solutions = d.get("solutions", [])
        if not isinstance(solutions, (list, tuple)) or not all(isinstance(s, str) for s in solutions):
            raise TaskError(f"task {d['task_id']!r}: 'solutions' must be a list of strings")
        kwargs = dict(d)
        kwargs["tests"] = tuple({"input": t["input"], "output": t["output"]} for t in tests)
        kwargs["solutions"] = tuple(solutions)
        if "time_limit_s" in kwargs:
            kwargs["time_limit_s"] = float(kwargs["time_limit_s"])
        if kwargs.get("float_tol") is not None:
            kwargs["float_tol"] = float(kwargs["float_tol"])
        return cls(**kwargs)


_FIELDS = {f.name for f in fields(Task)}


def _check(d: dict, key: str, types: type | tuple, *, optional: bool = False,
           nonempty: bool = False, positive: bool = False) -> None:
    if key not in d:
        return
    value = d[key]
    if value is None and optional:
        return
    # bool is an int in Python, but `"memory_mb": true` is a mistake, not 1 MB.
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and nonempty:
        ok = bool(value)
    if ok and positive:
        ok = value > 0
    if not ok:
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        want = ("a positive " if positive else "a non-empty " if nonempty else "") + names
        raise TaskError(f"task key {key!r} must be {want}{' or null' if optional else ''}, "
                        f"got {value!r}"[:200])


def read_jsonl(path: str | Path) -> list[Task]:
    """Tasks from a JSONL file, one per line (blank lines skipped).

    A missing file or a malformed line raises TaskError naming the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such task file; check the path (export one with "
                        "`python -m selfregress.tasks export --source synthetic --out T.jsonl`)")
    tasks = []
    with path.open(encoding="utf-8") as f:
        for lineno, record in iter_json_lines(f, path, "task object"):
            try:
                tasks.append(Task.from_dict(record))
            except TaskError as e:
                raise TaskError(f"{path}:{lineno}: {e}") from None
    return tasks


def iter_json_lines(lines: Iterable[str], path: Path, what: str = "record"):
    """(line number, parsed JSON) per non-blank line; a malformed line is a TaskError naming it."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno}); "
                            f"each line must be one {what}") from None


def write_jsonl(tasks: Iterable[Task], path: str | Path) -> None:
    """Write tasks in schema form, one JSON object per line (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps(task.to_dict(), ensure_ascii=False) + "\n")
