"""Benchmark held-out evaluation end to end: 64 tasks x 4 samples, sampled, extracted, graded.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python benchmarks/evaluation.py --model models:/selfregress-base@base
    python benchmarks/evaluation.py --model PATH

Prints the wall time of each repetition and its split between sampling and grading.
Target on a 2-core machine: under 15 s for 64 x 4.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a folder or models:/ URI (e.g. the registry base)")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import torch

    torch.set_num_threads(1)
    from grader import Grader
    from selfregress.evaluation import evaluate
    from selfregress.policy import build_prompt, extract_program, load_policy
    from selfregress.sampling import sample
    from selfregress.tasks import synthetic_splits

    policy = load_policy(args.model)
    tasks = synthetic_splits(seed=0).eval[:args.tasks]
    prompts = [build_prompt(policy.tokenizer, t.prompt) for t in tasks]
    walls, samplings = [], []
    with Grader(workers=2) as grader:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            result = evaluate(policy, tasks, grader, samples=args.samples, temperature=1.0,
                              max_new_tokens=96, seed=repeat)
            walls.append(time.perf_counter() - started)
            started = time.perf_counter()
            out = sample(policy, prompts, n=args.samples, max_new_tokens=96, seed=repeat)
            [extract_program(t) for t in out.texts]
            samplings.append(time.perf_counter() - started)
            print(f"repeat {repeat}: {walls[-1]:.2f} s for {result.trials} completions "
                  f"(sampling alone {samplings[-1]:.2f} s), pass@1 {result.pass_at_1:.3f}")
    wall, sampling = statistics.median(walls), statistics.median(samplings)
    print(f"evaluation {args.tasks}x{args.samples}: median {wall:.2f} s "
          f"(sampling {sampling:.2f} s, grading and the rest {wall - sampling:.2f} s); target < 15 s")


if __name__ == "__main__":
    main()
