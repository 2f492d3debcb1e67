"""Local copies of public code benchmarks -> the task schema.

Each loader reads records (JSONL, a JSON array, optionally gzipped, parquet when pyarrow is
installed, or a folder of such files) in the dataset's native Hugging Face layout, and maps
each record to a Task. Records that cannot be graded (no tests left) are skipped, and one
warning says how many and why. Nothing is downloaded.

Limits worth knowing:
- APPS/TACO call-based outputs are usually wrapped in a one-element list (their harness
  accepts either form). When every output of a task is such a list, it is unwrapped.
- LiveCodeBench's private tests are base64(zlib(pickle)). Unpickling can run code, so they
  are decoded only with ``allow_pickle=True``, and then by an unpickler that refuses every
  global (plain strings, lists and dicts only). Without it, only public tests are kept.
- MBPP and HumanEval test with Python code; ``benchmarks.py`` keeps that code whole as the
  task's ``test_code``, so no check is dropped.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import pickle
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from selfregress.tasks.benchmarks import Skip, require, from_humaneval, from_mbpp
from selfregress.tasks.schema import Task, TaskError, iter_json_lines

log = logging.getLogger("selfregress.tasks")


# -- reading records -------------------------------------------------------------------------
def read_records(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(where, record) for every record under ``path``; ``where`` is "file:line" or "file[i]"."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p))
        if not files:
            raise TaskError(f"{path}: no .jsonl, .json or .parquet files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise TaskError(f"{path}: no such file or folder; check the path")
    for file in files:
        kind = _kind(file)
        if kind is None:
            raise TaskError(f"{file}: unsupported file type; use .jsonl, .json (an array), "
                            ".parquet, or their .gz forms")
        yield from _READERS[kind](file)


def _kind(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return next((k for k in ("jsonl", "json", "parquet") if name.endswith("." + k)), None)


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with _open_text(path) as f:
        for lineno, record in iter_json_lines(f, path):
            if not isinstance(record, dict):
                raise TaskError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield f"{path}:{lineno}", record


def _read_json(path: Path) -> Iterator[tuple[str, dict]]:
    with _open_text(path) as f:
        try:
            records = json.load(f)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise TaskError(f"{path}: expected a JSON array of records (objects)")
    for i, record in enumerate(records):
        yield f"{path}[{i}]", record


def _read_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), "
                        "or convert the file to JSONL") from None
    for i, record in enumerate(pq.read_table(path).to_pylist()):
        yield f"{path}[{i}]", record


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet}


def _json_field(record: dict, key: str, default=None):
    """A field the datasets store as a JSON string (sometimes already decoded)."""
    value = record.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise Skip(f"'{key}' is not valid JSON") from None
    return value


# -- APPS / TACO -----------------------------------------------------------------------------
def from_apps(record: dict, where: str, index: int, notes: Counter, source: str = "apps") -> Task:
    """APPS (codeparrot/apps) or TACO (BAAI/TACO): ``input_output`` holds inputs/outputs
    and, for call-based problems, ``fn_name``; ``solutions`` is a JSON list of programs."""
    require(record, where, source.upper(), "question", "input_output")
    io_spec = _json_field(record, "input_output", {})
    if not isinstance(io_spec, dict):
        raise Skip("'input_output' is not an object")
    inputs, outputs = io_spec.get("inputs") or [], io_spec.get("outputs") or []
    if not inputs or len(inputs) != len(outputs):
        raise Skip("no tests" if not inputs else "inputs and outputs differ in number")
    fn_name = io_spec.get("fn_name") or None
    if fn_name:
        if not all(isinstance(args, list) for args in inputs):
            raise Skip("call-based input that is not a list of arguments")
        # The harness compares against `out` or `out[0]`: every output wrapped in a
        # one-element list means the wrapping is the dataset's convention, not the value.
        if all(isinstance(o, list) and len(o) == 1 for o in outputs):
            outputs = [o[0] for o in outputs]
        tests = [{"input": json.dumps(args), "output": json.dumps(out)}
                 for args, out in zip(inputs, outputs)]
    else:
        tests = [{"input": _lines(i), "output": _lines(o)} for i, o in zip(inputs, outputs)]
    solutions = _json_field(record, "solutions", [])
    time_limit, memory_mb = 4.0, 256  # APPS's harness: 4 s per test
    if source == "taco":
        time_limit = _seconds(record.get("time_limit")) or time_limit
        memory_mb = _megabytes(record.get("memory_limit")) or memory_mb
    task_id = record.get("problem_id", record.get("id", index))
    return Task(task_id=f"{source}/{task_id}", prompt=record["question"], tests=tuple(tests),
                fn_name=fn_name, starter_code=record.get("starter_code") or None,
                time_limit_s=time_limit, memory_mb=memory_mb, source=source,
                difficulty=record.get("difficulty"),
                solutions=tuple(s for s in solutions if isinstance(s, str)))


def from_taco(record: dict, where: str, index: int, notes: Counter) -> Task:
    return from_apps(record, where, index, notes, source="taco")


def _lines(value) -> str:
    """Stdio tests are strings, or (in some APPS/TACO rows) lists of lines."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _seconds(text) -> float | None:
    match = re.match(r"\s*([\d.]+)\s*(second|sec|s)", str(text or ""))
    return float(match.group(1)) if match else None


def _megabytes(text) -> int | None:
    match = re.match(r"\s*([\d.]+)\s*(megabyte|mb)", str(text or ""), re.IGNORECASE)
    return int(float(match.group(1))) if match else None


# -- CodeContests ----------------------------------------------------------------------------
# The Language enum of deepmind/code_contests: 0 unknown, 1 python2, 2 c++, 3 python3, 4 java.
PYTHON3 = 3


def from_codecontests(record: dict, where: str, index: int, notes: Counter) -> Task:
    """deepmind/code_contests: public, private and generated tests (in that order), and the
    Python 3 solutions. Its time limits were set for C++; Python may need more."""
    require(record, where, "CodeContests", "description", "public_tests")
    tests = []
    for key in ("public_tests", "private_tests", "generated_tests"):
        block = record.get(key) or {}
        pairs = zip(block.get("input") or [], block.get("output") or [])
        tests += [{"input": i, "output": o} for i, o in pairs]
    if not tests:
        raise Skip("no tests")
    solutions = record.get("solutions") or {}
    python = [s for lang, s in zip(solutions.get("language") or [], solutions.get("solution") or [])
              if lang in (PYTHON3, "PYTHON3", "python3")]
    limit = record.get("time_limit") or {}
    seconds = 0.0
    if isinstance(limit, dict):  # a protobuf Duration
        seconds = (limit.get("seconds") or 0) + (limit.get("nanos") or 0) / 1e9
    memory = record.get("memory_limit_bytes") or 0
    return Task(task_id=f"codecontests/{record.get('name') or index}", prompt=record["description"],
                tests=tuple(tests), time_limit_s=seconds or 2.0,
                memory_mb=max(1, memory // 2**20) if memory else 256, source="codecontests",
                difficulty=record.get("difficulty"), solutions=tuple(python))


# -- LiveCodeBench ---------------------------------------------------------------------------
def from_livecodebench(record: dict, where: str, index: int, notes: Counter,
                       allow_pickle: bool = False) -> Task:
    """livecodebench/code_generation(_lite): JSON public tests; private tests JSON or pickled.
    Functional tests hold one JSON value per line (the arguments) and a JSON result."""
    require(record, where, "LiveCodeBench", "question_content", "public_test_cases")
    cases = list(_json_field(record, "public_test_cases", []))
    private = decode_private_tests(record.get("private_test_cases"), allow_pickle)
    if private is None:
        notes["pickled private tests left undecoded"] += 1
    else:
        cases += private
    metadata = _json_field(record, "metadata", {})
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    cases = [c for c in cases if isinstance(c, dict) and isinstance(c.get("input"), str)
             and isinstance(c.get("output"), str)]
    functional = any(c.get("testtype") == "functional" for c in cases)
    if functional and not fn_name:
        raise Skip("functional tests without metadata.func_name")
    tests = []
    for case in cases:
        if (case.get("testtype") == "functional") != functional:
            notes["tests of the other test type, dropped"] += 1
        elif functional:  # one JSON value per line: the arguments
            try:
                args = [json.loads(line) for line in case["input"].split("\n")]
                tests.append({"input": json.dumps(args), "output": json.dumps(json.loads(case["output"]))})
            except json.JSONDecodeError:
                notes["functional tests that are not JSON, dropped"] += 1
        else:
            tests.append({"input": case["input"], "output": case["output"]})
    if not tests:
        raise Skip("no tests")
    return Task(task_id=f"livecodebench/{record.get('question_id') or index}",
                prompt=record["question_content"], tests=tuple(tests),
                fn_name=fn_name if functional else None,
                starter_code=record.get("starter_code") or None,
                time_limit_s=6.0,  # LiveCodeBench's default per-test timeout
                source="livecodebench", difficulty=record.get("difficulty"))


class _NoGlobals(pickle.Unpickler):
    """Even when the user opts in, refuse every global: no callable can be reached, so the
    pickle can only rebuild plain data (LiveCodeBench stores a JSON string)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def decode_private_tests(raw, allow_pickle: bool) -> list | None:
    """The private tests as a list; None when they are pickled and ``allow_pickle`` is off."""
    if not raw:
        return []
    if isinstance(raw, list):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if not allow_pickle:
        return None
    try:
        value = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(raw)))).load()
        return json.loads(value) if isinstance(value, (str, bytes)) else list(value)
    except Exception as e:  # untrusted bytes: any failure means "not decodable", not a crash
        raise Skip(f"private tests could not be decoded ({type(e).__name__})") from None


# -- all formats -----------------------------------------------------------------------------
FORMATS: dict[str, Callable[..., Task]] = {
    "apps": from_apps, "taco": from_taco, "codecontests": from_codecontests,
    "livecodebench": from_livecodebench, "mbpp": from_mbpp, "humaneval": from_humaneval,
}


def load_format(fmt: str, path: str | Path, *, limit: int | None = None,
                allow_pickle: bool = False) -> list[Task]:
    """All gradable tasks of one dataset file or folder, in file order (first ``limit``)."""
    convert = FORMATS[fmt]
    extra = {"allow_pickle": allow_pickle} if fmt == "livecodebench" else {}
    tasks: list[Task] = []
    skipped: Counter = Counter()   # reason -> records
    notes: Counter = Counter()     # what was dropped inside kept records
    seen = 0
    for index, (where, record) in enumerate(read_records(path)):
        if limit is not None and len(tasks) >= limit:
            break
        seen += 1
        try:
            tasks.append(convert(record, where, index, notes, **extra))
        except Skip as reason:
            skipped[str(reason)] += 1
    if skipped:
        log.warning("%s: skipped %d of %d records: %s", fmt, sum(skipped.values()), seen, _summary(skipped))
    if +notes:
        log.warning("%s: %s", fmt, _summary(+notes))
    if notes["pickled private tests left undecoded"]:
        log.warning("livecodebench: only public tests kept where private tests are pickled; pass "
                    "allow_pickle=True (--allow-pickle) to decode them (only for files you trust: "
                    "globals are refused, but a crafted file can still exhaust memory)")
    if not tasks:
        why = f" ({_summary(skipped)})" if skipped else ""
        raise TaskError(f"{path}: no gradable {fmt} tasks{why}; is the source prefix right?")
    return tasks


def _summary(counts: Counter) -> str:
    return "; ".join(f"{n} {what}" for what, n in counts.most_common())
