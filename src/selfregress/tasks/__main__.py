"""``python -m selfregress.tasks``: export tasks to the JSONL schema, or show a few.

    python -m selfregress.tasks export --source synthetic --split eval --out eval.jsonl
    python -m selfregress.tasks export --source apps:/data/apps/test.jsonl --out apps.jsonl
    python -m selfregress.tasks show --source synthetic:3 --split rl

A user error prints one line (``error: ...``) on stderr and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from selfregress.tasks.schema import TaskError, write_jsonl
from selfregress.tasks.sources import KNOWN, load_tasks
from selfregress.tasks.synthetic import SPLITS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m selfregress.tasks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("export", "write tasks as schema JSONL"), ("show", "print tasks for a human")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--source", required=True, help=f"one of: {', '.join(KNOWN)}, or a .jsonl path")
        p.add_argument("--split", default=None, choices=(*SPLITS, "all"),
                       help="synthetic split (default: all for export, eval for show)")
        p.add_argument("--seed", type=int, default=None, help="synthetic generator seed (default 0)")
        p.add_argument("--limit", type=int, default=3 if name == "show" else None,
                       help="keep the first N tasks")
        p.add_argument("--max-tests", type=int, default=None, help="keep the first N tests of each task")
        p.add_argument("--time-limit-s", type=float, default=None, help="override the per-test CPU limit")
        p.add_argument("--memory-mb", type=int, default=None, help="override the memory limit")
        p.add_argument("--allow-pickle", action="store_true",
                       help="livecodebench: decode pickled private tests (only for files you trust)")
        if name == "export":
            p.add_argument("--out", required=True, help="output JSONL path")
    return parser


def options(args: argparse.Namespace) -> dict:
    """Only the options the user gave, so load_tasks can say which ones do not apply."""
    split = args.split
    if split is None and args.command == "show" and args.source.startswith("synthetic"):
        split = "eval"
    opts = {"limit": args.limit, "max_tests": args.max_tests, "time_limit_s": args.time_limit_s,
            "memory_mb": args.memory_mb, "seed": args.seed, "split": split,
            "allow_pickle": args.allow_pickle or None}
    return {k: v for k, v in opts.items() if v is not None}


def show(tasks) -> None:
    for task in tasks:
        kind = f"call {task.fn_name}(...)" if task.fn_name else "stdin/stdout"
        count = f"{len(task.tests)} tests"
        if task.test_code is not None:
            kind, count = "test code", f"{task.test_code.count(chr(10))} lines of test code"
        print(f"== {task.task_id}  [{task.source}, difficulty {task.difficulty}, {kind}, {count}]")
        print(task.prompt)
        if task.starter_code:
            print("-- starter code\n" + task.starter_code.rstrip())
        if task.solutions:
            print("-- reference\n" + task.solutions[0].rstrip())
        if task.test_code is not None:
            print("-- test code\n" + task.test_code.rstrip())
        for test in task.tests[:3]:
            print(f"-- input {test['input']!r} -> output {test['output']!r}")
        print()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        tasks = load_tasks(args.source, **options(args))
        if args.command == "export":
            write_jsonl(tasks, args.out)
            print(f"wrote {len(tasks)} tasks to {args.out}")
        else:
            show(tasks)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the output folder is not writable
        print(f"error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
