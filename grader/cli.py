"""`python -m grader grade --tasks T.jsonl --programs P.jsonl --out V.jsonl [--workers N]`

Reads the tasks (task schema, one per line) and the programs ({"task_id", "program"} per line),
grades every program, and writes one verdict per program, in input order:
{"task_id", "verdict", "passed", "first_failed_test", "run_time_s"}. A malformed line stops
the run before anything is graded, with one line naming the file and line number (exit 2).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from .core import Grader
from .sandbox import SandboxError
from .spec import task_spec

CHUNK = 64  # programs per grade_many call: how often the progress bar moves


class InputError(Exception):
    """A problem with the user's files: reported as one line, exit status 2."""


def _read_jsonl(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        yield number, record


def load_tasks(path: Path) -> dict[str, dict]:
    tasks: dict[str, dict] = {}
    for number, record in _read_jsonl(path):
        task_id = record.get("task_id")
        if not isinstance(task_id, str):
            raise InputError(f"{path}:{number}: missing string 'task_id'")
        if task_id in tasks:
            raise InputError(f"{path}:{number}: duplicate task_id {task_id!r}")
        try:
            task_spec(record)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
        tasks[task_id] = record
    return tasks


def load_programs(path: Path, tasks: dict[str, dict]) -> list[tuple[str, str]]:
    programs = []
    for number, record in _read_jsonl(path):
        task_id, program = record.get("task_id"), record.get("program")
        if not isinstance(task_id, str) or not isinstance(program, str):
            raise InputError(f"{path}:{number}: needs string 'task_id' and 'program'")
        if task_id not in tasks:
            raise InputError(f"{path}:{number}: unknown task_id {task_id!r}")
        programs.append((task_id, program))
    return programs


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"programs  {rate:.0f}/s")
    sys.stderr.flush()


def grade_files(tasks_path: Path, programs_path: Path, out_path: Path, workers: int) -> int:
    """Grade a programs file against a tasks file; returns the number that passed."""
    tasks = load_tasks(tasks_path)
    programs = load_programs(programs_path, tasks)
    show_progress = sys.stderr.isatty()
    started, passed = time.monotonic(), 0
    with Grader(workers=workers) as grader, open(out_path, "w", encoding="utf-8") as out:
        for begin in range(0, len(programs), CHUNK):
            chunk = programs[begin:begin + CHUNK]
            verdicts = grader.grade_many([(program, tasks[task_id]) for task_id, program in chunk])
            for (task_id, _), verdict in zip(chunk, verdicts):
                passed += verdict.passed
                out.write(json.dumps({
                    "task_id": task_id, "verdict": verdict.outcome.value,
                    "passed": verdict.passed, "first_failed_test": verdict.first_failed_test,
                    "run_time_s": verdict.run_time_s}) + "\n")
            out.flush()
            if show_progress:
                _progress(begin + len(chunk), len(programs), started)
    if show_progress:
        sys.stderr.write("\n")
    return passed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader",
                                     description="Grade untrusted programs in a sandbox.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade a JSONL of programs against a JSONL of tasks")
    grade.add_argument("--tasks", type=Path, required=True, help="tasks JSONL (task schema)")
    grade.add_argument("--programs", type=Path, required=True,
                       help='programs JSONL: {"task_id": ..., "program": ...} per line')
    grade.add_argument("--out", type=Path, required=True, help="verdicts JSONL to write")
    grade.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="concurrent programs (default: the number of CPUs)")
    return parser


def unquote_mlflow_argv(argv: list[str]) -> list[str]:
    """Undo the second quoting of MLflow's Docker/Kubernetes backends.

    They shlex-quote every token of an already-quoted command and run it without a shell, so an
    empty value arrives as the two characters ``''`` and ``a b`` as ``'a b'``. A token that is
    exactly ``shlex.quote`` of one word is that word; nothing else is touched.
    """
    out = []
    for token in argv:
        if token.startswith("'"):
            try:
                words = shlex.split(token)
            except ValueError:
                words = []
            if len(words) == 1 and shlex.quote(words[0]) == token:
                token = words[0]
        out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(unquote_mlflow_argv(sys.argv[1:] if argv is None else argv))
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        passed = grade_files(args.tasks, args.programs, args.out, args.workers)
    except (InputError, SandboxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{passed} passed; verdicts written to {args.out}", file=sys.stderr)
    return 0
