"""How large the report split must be: the sd of one checkpoint's report pass@1.

Usage:
    python benchmarks/report_split_noise.py MODEL [--offset 128] [--pool 512] [--samples 4]
                                            [--workers 2] [--max-new-tokens 96] [--counts FILE]

Evaluates MODEL (a folder, e.g. the shipped base) on ``--pool`` eval-split tasks after the
first ``--offset`` (the selection split), ``--samples`` completions per task at T = 1, and keeps
each task's count of passing samples (written to ``--counts``; a second run with the same file
skips the sampling). From those counts it prints, for report splits of N tasks x S samples:

- ``sd_seed``: the sd over fresh sampling seeds on one fixed set of tasks,
  sqrt(mean_i p_i (1 - p_i) / (N S)), with the unbiased per-task c (m - c) / (m (m - 1));
- ``sd_both``: the sd over fresh sampling seeds AND resampled tasks (the split is itself a
  draw from the task distribution), sqrt((Var_i p_i + mean_i p_i (1 - p_i) / S) / N);
- ``sd_emp``: the same, measured: 4,000 replicates, each N tasks drawn with replacement from
  the pool and S of each task's m samples drawn without replacement (a fresh seed's draw).

Reads the synthetic eval split and MODEL; writes only ``--counts``. Seeded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def noise_table(counts: np.ndarray, m: int, sizes, draws: int = 4000, seed: int = 0) -> list[dict]:
    """counts: (P,) passing samples of m per task. One row per (N, S) in ``sizes``."""
    c = counts.astype(float)
    p_hat = c / m                                             # (P,)
    within = c * (m - c) / (m * (m - 1))                      # (P,) unbiased p_i (1 - p_i)
    between = max(float(p_hat.var(ddof=1) - within.mean() / m), 0.0)   # Var_i p_i
    rng = np.random.default_rng(seed)
    rows = []
    for n, s in sizes:
        tasks = rng.integers(0, c.size, size=(draws, n))       # (draws, N) resampled tasks
        passes = rng.hypergeometric(c[tasks].astype(int), (m - c[tasks]).astype(int), s)  # (draws, N)
        emp = passes.sum(axis=1) / (n * s)
        rows.append({"tasks": n, "samples": s, "mean": float(p_hat.mean()),
                     "sd_seed": float(np.sqrt(within.mean() / (n * s))),
                     "sd_both": float(np.sqrt((between + within.mean() / s) / n)),
                     "sd_emp": float(emp.std(ddof=1))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--offset", type=int, default=128)
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--counts", default="report_split_counts.json")
    args = parser.parse_args()
    path = Path(args.counts)
    if path.is_file():
        counts = np.array(json.loads(path.read_text())["counts"])
    else:
        import torch

        from grader import Grader
        from selfregress.evaluation import evaluate
        from selfregress.policy import load_policy
        from selfregress.tasks import synthetic_splits

        torch.set_num_threads(1)
        tasks = synthetic_splits(seed=0, n_pretrain=0, n_rl=0, n_eval=args.offset + args.pool,
                                 n_test=0).eval[args.offset:]
        with Grader(workers=args.workers) as grader:
            result = evaluate(load_policy(args.model), tasks, grader, samples=args.samples,
                              temperature=1.0, max_new_tokens=args.max_new_tokens, seed=12345)
        counts = result.successes
        path.write_text(json.dumps({"model": args.model, "offset": args.offset, "samples": args.samples,
                                    "counts": counts.tolist()}))
    sizes = [(n, s) for n in (128, 256, 384, 512) for s in (2, 4)]
    print(f"pool {counts.size} tasks x {args.samples} samples, mean pass@1 {counts.mean() / args.samples:.4f}")
    print(f"{'N':>4s} {'S':>2s}  {'sd_seed':>8s} {'sd_both':>8s} {'sd_emp':>8s}   (points)")
    for row in noise_table(counts, args.samples, sizes):
        print(f"{row['tasks']:4d} {row['samples']:2d}  {row['sd_seed'] * 100:8.2f} "
              f"{row['sd_both'] * 100:8.2f} {row['sd_emp'] * 100:8.2f}")


if __name__ == "__main__":
    main()
