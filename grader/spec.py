"""Read what the grader needs from a task, whatever its shape.

A task is either a Mapping in the project's task schema (selfregress/tasks/schema.py) or any
object with the same attributes (the selfregress `Task` dataclass). Tests are dicts or objects
with `input` and `output`. Only these keys are read: tests, fn_name, time_limit_s, memory_mb,
float_tol, test_code. A bad value raises ValueError naming the key.

Three kinds of test: stdin/stdout; call-based (`fn_name`: JSON arguments, JSON result); and
the benchmark's own test code (`test_code`: e.g. HumanEval's `check` and `check(entry_point)`,
or MBPP's set-up code and asserts), which passes when it runs to its end (`_testcode.py`). A
test-code task has no `tests`; the whole test code counts as one test.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TIME_LIMIT_S = 2.0
DEFAULT_MEMORY_MB = 256


@dataclass(frozen=True)
class TaskSpec:
    inputs: tuple[bytes, ...]     # stdin bytes, or the JSON argument list for call-based tasks
    expected: tuple[object, ...]  # expected stdout (str), or the decoded JSON value if call-based
    fn_name: str | None           # set: call-based task
    time_limit_s: float           # CPU seconds per test
    memory_mb: int                # address space the program may add to the interpreter's
    float_tol: float | None       # numeric tolerance for output comparison
    output_bytes: int = 0         # total size of the expected outputs (sets the output cap)
    test_code: str | None = None  # set: the benchmark's own test code is the one test


def _getter(record):
    """record.get for Mappings, getattr for anything else (duck typing)."""
    if isinstance(record, Mapping):
        return record.get
    return lambda key, default=None: getattr(record, key, default)


def _number(field, key, default, kind):
    value = field(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"task {key} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"task {key} must be positive and finite, got {value!r}")
    return kind(value)


def task_spec(task: object) -> TaskSpec:
    """Normalise a task (Mapping or object) into the grader's TaskSpec."""
    if isinstance(task, TaskSpec):
        return task
    field = _getter(task)
    test_code = field("test_code")
    if test_code is not None:
        return _test_code_spec(field, test_code)
    tests = field("tests")
    if tests is None or isinstance(tests, (str, bytes)):
        raise ValueError("task has no 'tests' list")
    fn_name = field("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise ValueError(f"task fn_name must be an identifier or None, got {fn_name!r}")
    float_tol = field("float_tol")
    if float_tol is not None:
        float_tol = _number(field, "float_tol", None, float)
    inputs, expected, output_bytes = [], [], 0
    for index, test in enumerate(tests):
        if type(test) is dict:
            test_input, test_output = test.get("input"), test.get("output")
        else:
            test_field = _getter(test)
            test_input, test_output = test_field("input"), test_field("output")
        if not isinstance(test_input, str) or not isinstance(test_output, str):
            raise ValueError(f"task tests[{index}] needs str 'input' and 'output'")
        inputs.append(test_input.encode("utf-8", "surrogateescape"))
        output_bytes += len(test_output)
        if fn_name is None:
            expected.append(test_output)
            continue
        try:
            if not isinstance(json.loads(test_input), list):
                raise ValueError
        except ValueError:
            raise ValueError(f"task tests[{index}].input is not a JSON list of arguments "
                             "(fn_name is set)") from None
        try:
            expected.append(json.loads(test_output))
        except ValueError:
            raise ValueError(
                f"task tests[{index}].output is not JSON (fn_name is set)") from None
    if not inputs:
        raise ValueError("task has an empty 'tests' list")
    return TaskSpec(
        inputs=tuple(inputs),
        expected=tuple(expected),
        fn_name=fn_name,
        time_limit_s=_number(field, "time_limit_s", DEFAULT_TIME_LIMIT_S, float),
        memory_mb=_number(field, "memory_mb", DEFAULT_MEMORY_MB, int),
        float_tol=float_tol,
        output_bytes=output_bytes,
    )


def _test_code_spec(field, test_code) -> TaskSpec:
    if not isinstance(test_code, str) or not test_code.strip():
        raise ValueError("task test_code must be a non-empty str")
    if field("tests"):
        raise ValueError("a task with test_code has no 'tests' (the test code is the test)")
    try:
        compile(test_code, "test.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"task test_code does not compile: {exc}") from None
    return TaskSpec(inputs=(b"",), expected=(None,), fn_name=None,
                    time_limit_s=_number(field, "time_limit_s", DEFAULT_TIME_LIMIT_S, float),
                    memory_mb=_number(field, "memory_mb", DEFAULT_MEMORY_MB, int),
                    float_tol=None, test_code=test_code)
