"""Benchmark one chain: seconds per step and where they go, the chain's wall time, peak RSS.

    python benchmarks/chain.py                      # the default 10 x 20 chain (about 9-10 min on 2 cores)
    python benchmarks/chain.py --campaigns 1        # one campaign, projected to 10 x 20
    python benchmarks/chain.py --model small        # another start model (default: the shipped base)
    python benchmarks/chain.py --campaigns 1 --models base,small   # two bases, one after the other,
                                                    # and the ratio of their projected chains

On a shared machine wall time measures the load as much as the code: the CPU seconds of this
process (torch and the loop) and of the grader's processes are printed beside it, and the
default chain is projected from the steps (x 200) and, apart, from what each campaign spends
outside its steps (x 10: loading, set-up, the report-split evaluations).

It runs the real `main` code path (real grader, real sqlite store in a temp dir) and reads the
phase timings back from the campaign runs (`time/*` metrics). Targets on a 2-core machine: a
default chain in 5 minutes or less, tracking under 3% of step time, peak RSS under 2 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

PHASES = ("sampling", "grading", "update", "evaluation", "tracking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--condition", default="naive")
    parser.add_argument("--model", default="base", help="start model: base (the shipped default), small, a folder, a URI")
    parser.add_argument("--models", default="", help="several start models, comma-separated, measured in turn")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads; 0: as `main` does (OMP_NUM_THREADS, else the cores, at most 4)")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="chain-bench-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import torch

    from selfregress.cli import default_threads
    from selfregress.tracking import connect

    torch.set_num_threads(args.threads or default_threads())
    store = connect("chain-benchmark")
    models = [m for m in args.models.split(",") if m] or [args.model]
    projected = {}
    for model in models:
        projected[model] = bench(args, store, model)
    if len(models) > 1:
        first = models[0]
        print("projected default chain, ratio to " + first + ": "
              + ", ".join(f"{m} {projected[m] / projected[first]:.2f}x" for m in models[1:]))


def bench(args, store, model: str) -> float:
    """One chain from ``model``: print its phase table; return its projected default chain in s."""
    import torch

    from grader import Grader
    from selfregress.bootstrap import start_model
    from selfregress.chain import run_chain
    from selfregress.chain_config import ChainConfig
    from selfregress.config import parse
    from selfregress.records import campaign_records

    config = parse(ChainConfig, {"condition": args.condition, "campaigns": args.campaigns,
                                 "steps": args.steps, "model": model})
    with Grader(workers=config.workers) as grader:
        start = start_model(store, model, log=lambda m: print(m, file=sys.stderr))
        started, cpu_started = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        grader_started = _cpu(resource.RUSAGE_CHILDREN)
        chain_id = run_chain(config, store, grader, start, log=lambda m: None)
        wall, cpu = time.perf_counter() - started, _cpu(resource.RUSAGE_SELF) - cpu_started
    grader_cpu = _cpu(resource.RUSAGE_CHILDREN) - grader_started   # the grader's servers, reaped at close

    records = campaign_records(store, chain_id)
    steps = sum(r.last_step for r in records)
    evaluations = sum(len(r.pass_at_1) for r in records)
    totals = {p: sum(store.get_run(r.run_id).data.metrics[f"time/{p}"] for r in records) for p in PHASES}
    measured = sum(totals.values())
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(f"chain from {model}: {args.condition}, {len(records)} campaigns, {steps} steps, {evaluations} evaluations, "
          f"batch {config.batch_size}x{config.group_size}, eval {config.eval_tasks}x{config.eval_samples}, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"wall time: {wall:.1f} s ({wall / steps:.2f} s per step, evaluation included); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"CPU time: main process {cpu / steps:.2f} s per step, grader processes {grader_cpu / steps:.2f} s "
          f"per step (its whole life, the campaign's set-up included)")
    for phase in PHASES:
        print(f"  {phase:<11} {totals[phase] / steps:6.3f} s/step  {100 * totals[phase] / measured:5.1f}%")
    print(f"  {'other':<11} {(wall - measured) / steps:6.3f} s/step  (loading checkpoints, campaign set-up, "
          "report-split evaluation)")
    # The steps scale with the default campaigns x steps; what is not a step (loading, set-up, the
    # report-split evaluations after each campaign) scales with the default campaigns.
    default = ChainConfig()
    default_steps, default_campaigns = default.campaigns * default.steps, default.campaigns
    projected = measured / steps * default_steps + (wall - measured) / len(records) * default_campaigns
    shape = f"{default.campaigns}x{default.steps}"
    print(f"  per campaign, outside its steps: {(wall - measured) / len(records):.1f} s")
    print(f"default {shape} chain: {'measured' if (len(records), args.steps) == (default.campaigns, default.steps) else 'projected'} "
          f"{projected / 60:.1f} min (target <= 5 min on an idle machine); the main process was on a CPU "
          f"{100 * cpu / wall:.0f}% of the wall time")
    print(f"tracking share of step time: {100 * totals['tracking'] / measured:.2f}% (target < 3%)")
    print(f"peak RSS: main process {self_rss:.0f} MB, largest child {child_rss:.0f} MB (target < 2048 MB)")
    return projected


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
