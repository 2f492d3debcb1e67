"""One default chain step, in phases: sampling, grading, update, evaluation (s per step), and with
``--profile`` torch's own table of the operators that took the time.

    python benchmarks/step_phases.py                    # main's default threads, 3 steps after a warm-up
    python benchmarks/step_phases.py --threads 1 --profile

It runs the real ``train_step`` and ``evaluate_step`` of a naive campaign (16 prompts x 4 samples,
128 x 2 held-out tasks, 96 tokens) on the shipped base with the real grader, without MLflow, so
two checkouts can be compared side by side (``PYTHONPATH=<checkout>/src:<checkout>``). It
prints a digest of the weights after the steps: equal digests mean the same numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: as `main` does")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print torch's operator table")
    parser.add_argument("--model", default="src/selfregress/base/tiny", help="from the checkout's root")
    args = parser.parse_args()

    import numpy as np
    import torch

    try:
        from selfregress.cli import default_threads
    except ImportError:                                       # a checkout from before --threads 0
        default_threads = lambda: 1                            # noqa: E731  (its default was 1)
    torch.set_num_threads(args.threads or default_threads())
    from grader import Grader
    from selfregress.chain_config import ChainConfig
    from selfregress.config import parse
    from selfregress.policy import load_policy
    from selfregress.records import split_tasks
    from selfregress.step import StepTimes, evaluate_step, train_step
    from selfregress.updates import make_update

    config = parse(ChainConfig, {})
    rl_tasks, eval_tasks = split_tasks(config)
    policy = load_policy(args.model, trainable=True)
    update = make_update("reinforce", kl_beta=config.kl_beta, kl_estimator=config.kl_estimator,
                         max_new_tokens=config.max_new_tokens, ewc_lambda=config.ewc_lambda, baseline="none",
                         temperature=config.temperature, top_p=config.top_p, policy=policy, fisher_samples=None)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.lr)
    settings = dict(temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens)

    with Grader(workers=config.workers) as grader:
        def step(index: int, times: StepTimes) -> None:
            rng = np.random.default_rng(index)
            batch = [rl_tasks[i] for i in rng.choice(len(rl_tasks), config.batch_size, replace=False)]
            train_step(policy, None, optimizer, update, batch, grader, group_size=config.group_size,
                       seed=index, times=times, **settings)
            evaluate_step(policy, eval_tasks, grader, samples=config.eval_samples, seed=1000 + index,
                          times=times, **settings)

        step(0, StepTimes())                                  # warm-up
        times = StepTimes()
        profiler = None
        if args.profile:
            from torch.profiler import ProfilerActivity, profile
            profiler = profile(activities=[ProfilerActivity.CPU])
            profiler.__enter__()
        started, cpu = time.perf_counter(), time.process_time()
        for index in range(1, args.steps + 1):
            step(index, times)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None:
            profiler.__exit__(None, None, None)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15,
                                                max_name_column_width=50))
    digest = hashlib.sha256()
    for name, tensor in sorted(policy.model.state_dict().items()):
        digest.update(tensor.detach().numpy().tobytes())
    print(f"{torch.get_num_threads()} torch thread(s), {args.steps} steps, load average {os.getloadavg()[0]:.1f}")
    for phase, seconds in vars(times).items():
        if phase != "tracking":
            print(f"  {phase:<11} {seconds / args.steps:6.3f} s/step")
    print(f"  wall        {wall / args.steps:6.3f} s/step (main process CPU {cpu / args.steps:.3f} s/step)")
    print(f"weights after the steps: sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
