"""One GRPO training step: this project's ``train_step`` against TRL's ``GRPOTrainer``, on CPU.

Usage:
    pip install -e '.[bench]'                      # TRL is a benchmark-only extra
    python benchmarks/step_vs_trl.py               # builds a tiny SFT'd base model in a temp dir
    python benchmarks/step_vs_trl.py --model DIR   # reuses DIR, or builds the base model into it

Target: ours is at least 2x faster than TRL's GRPOTrainer on the same work: the median over
``--repeats`` repetitions of the ratio TRL/ours of the median seconds per step.

The sides are interleaved (ours, TRL, ours, TRL, ...), each repetition loading the model
afresh and running the same steps, so that load from other processes falls on both alike.
Both sides do the same work, in one process, on 1 torch thread:

- the same model: a tiny Qwen2 SFT'd by ``selfregress.bootstrap.train_base`` (tests' TINY_BASE
  settings: ~5% held-out pass@1, so GRPO advantages are sometimes non-zero), loaded from the
  same folder by each side, float32;
- the same prompts: ``synthetic_splits(seed=0).rl`` through ``build_prompt``; step k uses RL
  tasks k*P .. k*P+P-1 on both sides;
- the same batch: ``--prompts`` P x ``--samples`` G completions per optimizer step, at most
  ``--max-new-tokens``, temperature 1, top-p 1, no top-k;
- the same reward: the project's grader (``extract_program`` then ``Grader.grade_many``; 1 iff
  every test passes), wrapped as a TRL reward function for TRL;
- the same update: group-normalised advantages (r - mean_g) / (std_g + eps), the Dr. GRPO
  loss normalisation (sum over tokens / (B * max_new_tokens)), no KL, one optimizer step per
  batch (TRL: ``num_iterations=1``, ``steps_per_generation=1``, ``gradient_accumulation_steps=1``,
  so its ratio is exactly 1 and its clipped surrogate has the plain policy gradient), AdamW at
  the same constant learning rate with weight decay 0 (so a step whose advantages are all zero
  leaves the weights unchanged, and the parameter-delta check means something), gradient norm
  clipped at 1.

Printed: the median seconds per step over ``--steps`` steps after ``--warmup`` warm-up steps,
the ratio TRL/ours, where each step's time goes, the mean reward and completion length (the
work actually done), and the L2 norm of each side's total parameter change (must be > 0).

Known differences (not equalisable without changing either side): TRL samples with ``model.generate``, ours with
``selfregress.sampling.sample``; the two draw different random samples, so completion lengths
and rewards differ step by step.

Reads: ``--model`` if given. Writes: the base model into ``--model`` if it has none, else a temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from grader import Outcome

# The tests' tiny base (tests/chain/conftest.py TINY_BASE): reaches ~5% held-out pass@1 in a
# few hundred SFT steps, a minute or two on a laptop core.
TINY_BASE = dict(seed=0, band_low=0.05, band_high=1.0, vocab_size=512, hidden_size=64, layers=2,
                 heads=4, kv_heads=2, intermediate_size=192, batch_size=32, lr=3e-3, max_steps=1500,
                 eval_every=100, eval_tasks=48, eval_samples=2, max_new_tokens=64, register=False)

# score(pairs of (program, task)) -> one reward per pair; the default is the project's grader.
Score = Callable[[Sequence[tuple[str, object]]], list[float]]


def require_trl():
    try:
        import trl
    except ImportError:
        sys.exit("step_vs_trl: TRL is not installed; it is a benchmark-only extra: pip install -e '.[bench]'")
    return trl


# ---- the model ---------------------------------------------------------------------------------
class _NullRun:
    """What ``train_base`` logs to, without MLflow."""

    def log_params(self, *args, **kwargs): ...
    def log_metrics(self, *args, **kwargs): ...
    def log_series(self, *args, **kwargs): ...


def build_base(folder: str | Path, grader) -> None:
    """SFT the tiny Qwen2 with the project's bootstrap code and save it to ``folder``."""
    from selfregress.bootstrap import BootstrapConfig, train_base

    started = time.perf_counter()
    policy, pass_at_1, steps = train_base(BootstrapConfig(**TINY_BASE), _NullRun(), grader,
                                          log=lambda message: None)
    policy.save(folder)
    print(f"base model: tiny Qwen2, {sum(p.numel() for p in policy.model.parameters()) / 1e6:.2f} M "
          f"parameters, {steps} SFT steps, held-out pass@1 {pass_at_1:.3f} "
          f"({time.perf_counter() - started:.0f} s) -> {folder}", flush=True)


def build_random_base(folder: str | Path) -> None:
    """A randomly initialised tiny Qwen2 with the project's tokenizer (plumbing checks only:
    its programs never pass, so with the real grader every advantage is 0)."""
    from selfregress.bootstrap import BootstrapConfig, build_model
    from selfregress.policy import Policy
    from selfregress.tasks import synthetic_splits
    from selfregress.tokenizer import train_tokenizer

    config = BootstrapConfig(**TINY_BASE)
    texts = (t.prompt + "\n" + s for t in synthetic_splits(seed=0).pretrain[:500] for s in t.solutions)
    tokenizer = train_tokenizer(texts, vocab_size=config.vocab_size)
    Policy(model=build_model(config, tokenizer), tokenizer=tokenizer,
           device=torch.device("cpu")).save(folder)


# ---- helpers -------------------------------------------------------------------------------------
def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def delta_norm(model, before: dict[str, torch.Tensor]) -> float:
    """L2 norm of the change of all parameters since ``before``."""
    total = sum(float(((p.detach() - before[name]) ** 2).sum()) for name, p in model.named_parameters())
    return total ** 0.5


class _ScoreGrader:
    """A ``grade_many`` over ``score``, for ``train_step``."""

    def __init__(self, score: Score):
        self.score = score

    def grade_many(self, pairs):
        # Verdict-shaped: train_step counts sandbox errors by outcome (grading.py).
        return [SimpleNamespace(reward=r, passed=bool(r), outcome=Outcome.PASSED if r else Outcome.WRONG_ANSWER)
                for r in self.score(list(pairs))]


def median_parts(steps: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(step[key] for step in steps) for key in steps[0]}


# ---- ours ----------------------------------------------------------------------------------------
def run_ours(model_dir: str, tasks, score: Score, args) -> dict:
    from selfregress import metric_keys as K
    from selfregress import step as step_module
    from selfregress.step import StepTimes, frozen_copy, step_seed, train_step
    from selfregress.updates import make_update
    from selfregress.forcing import completion_logprobs
    from selfregress.policy import load_policy

    policy = load_policy(model_dir, device="cpu")
    ref_model = frozen_copy(policy.model)
    update = make_update("grpo", kl_beta=0.0, kl_estimator="k1", max_new_tokens=args.max_new_tokens,
                         ewc_lambda=0.0, baseline="none", temperature=1.0, top_p=1.0)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=args.lr, weight_decay=0.0)
    grader = _ScoreGrader(score)
    before = snapshot(policy.model)
    steps, rewards, lengths = [], [], []
    forwards: dict[str, float] = {}

    def timed_logprobs(model, samples, **kwargs):
        # train_step calls it for the policy (with grad, the loss), and for the frozen start
        # model only under a KL penalty (not here: GRPO without KL skips that forward).
        name = "start-model forward" if model is ref_model else "loss forward"
        started = time.perf_counter()
        try:
            return completion_logprobs(model, samples, **kwargs)
        finally:
            forwards[name] = forwards.get(name, 0.0) + time.perf_counter() - started

    step_module.completion_logprobs = timed_logprobs     # train_step looks it up at call time
    try:
        for k in range(args.warmup + args.steps):
            batch = tasks[k * args.prompts:(k + 1) * args.prompts]
            times, forwards = StepTimes(), {}
            started, cpu_started = time.perf_counter(), time.process_time()
            metrics = train_step(policy, ref_model, optimizer, update, batch, grader,
                                 group_size=args.samples, temperature=1.0, top_p=1.0,
                                 max_new_tokens=args.max_new_tokens, seed=step_seed(args.seed, 0, k, 0),
                                 times=times)
            total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            rewards.append(metrics[K.TRAIN_REWARD_MEAN])
            lengths.append(metrics[K.TRAIN_RESPONSE_LENGTH])
            if k >= args.warmup:
                steps.append({"total": total, "cpu": cpu, "generation": times.sampling, "grading": times.grading,
                              "update": times.update, **forwards,
                              "backward+optimizer+other": times.update - sum(forwards.values())})
    finally:
        step_module.completion_logprobs = completion_logprobs
    return {"times": median_parts(steps), "delta": delta_norm(policy.model, before),
            "reward": statistics.mean(rewards), "length": statistics.mean(lengths)}


# ---- TRL ---------------------------------------------------------------------------------------
def run_trl(model_dir: str, tasks, score: Score, args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from selfregress.policy import build_prompt, extract_program

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    n_steps = args.warmup + args.steps
    used = tasks[:n_steps * args.prompts]
    dataset = Dataset.from_dict({
        "prompt": [build_prompt(tokenizer, t.prompt, t.starter_code) for t in used],
        "task_index": list(range(len(used)))})

    steps: list[dict[str, float]] = []          # one dict per optimizer step
    rewards, lengths = [], []

    def add(key: str, seconds: float) -> None:
        if steps:
            steps[-1][key] = steps[-1].get(key, 0.0) + seconds

    def grader_reward(prompts, completions, task_index, completion_ids=None, **kwargs):
        """The project's reward: extract the program, grade it against its task."""
        started = time.perf_counter()
        programs = [extract_program(c) for c in completions]
        result = score([(p, used[i]) for p, i in zip(programs, task_index)])
        add("grading", time.perf_counter() - started)
        rewards.append(statistics.mean(result))
        if completion_ids is not None:
            lengths.append(statistics.mean(len(ids) for ids in completion_ids))
        return result

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kwargs):
            steps.append({"started": time.perf_counter(), "cpu_started": time.process_time()})

        def on_step_end(self, a, state, control, **kwargs):
            steps[-1]["total"] = time.perf_counter() - steps[-1].pop("started")
            steps[-1]["cpu"] = time.process_time() - steps[-1].pop("cpu_started")

    # GRPOConfig turns activation checkpointing on by default; ours recomputes nothing.
    # transformers 5 renamed gradient_checkpointing (now a deprecated alias) to activation_checkpointing.
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    no_checkpointing = ({"activation_checkpointing": False} if "activation_checkpointing" in names
                        else {"gradient_checkpointing": False})
    output_dir = tempfile.TemporaryDirectory(prefix="step_vs_trl_")   # nothing is saved into it
    config = GRPOConfig(
        output_dir=output_dir.name, use_cpu=True, bf16=False, fp16=False,
        **no_checkpointing, torch_compile=False, use_vllm=False,
        per_device_train_batch_size=args.prompts * args.samples,   # completions, not prompts
        num_generations=args.samples, gradient_accumulation_steps=1, steps_per_generation=1,
        num_iterations=1, max_steps=n_steps, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, loss_type="dr_grpo", scale_rewards="group",
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        optim="adamw_torch", max_grad_norm=1.0, disable_dropout=True, shuffle_dataset=False,
        logging_steps=10_000, report_to="none", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, seed=args.seed, dataloader_num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # TRL reads a deprecated transformers alias
        trainer = GRPOTrainer(model=model, reward_funcs=grader_reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[StepTimer()])
    trainer.remove_callback(PrinterCallback)             # no end-of-training metrics dump

    def timed(name: str, method):
        def wrapper(*a, **kw):
            started = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                add(name, time.perf_counter() - started)
        return wrapper

    # Instance attributes shadow the methods: the trainer calls these through self.
    trainer._generate = timed("generation", trainer._generate)            # tokenize + generate + decode
    trainer._generate_and_score_completions = timed("rollout", trainer._generate_and_score_completions)
    trainer.compute_loss = timed("loss forward", trainer.compute_loss)
    checkpointing = ("is_activation_checkpointing" if hasattr(type(trainer.model), "is_activation_checkpointing")
                     else "is_gradient_checkpointing")
    assert not getattr(trainer.model, checkpointing), "TRL's model recomputes activations"
    before = snapshot(trainer.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # TRL reads a deprecated transformers alias
        trainer.train()
    delta = delta_norm(trainer.model, before)
    output_dir.cleanup()
    for step in steps:
        # rollout = generation + grading + padding, advantages and bookkeeping
        step["scoring other"] = step.pop("rollout") - step["generation"] - step["grading"]
        step["backward+optimizer+other"] = step["total"] - step["generation"] - step["grading"] \
            - step["scoring other"] - step["loss forward"]
        step["update"] = step["total"] - step["generation"] - step["grading"]
    return {"times": median_parts(steps[args.warmup:]), "delta": delta,
            "reward": statistics.mean(rewards), "length": statistics.mean(lengths) if lengths else float("nan")}


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side and repetition (after the warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, each running ours then TRL")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per side")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt (GRPO group size, >= 2)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="completion token limit")
    parser.add_argument("--lr", type=float, default=7e-4, help="AdamW learning rate (the chain's default)")
    parser.add_argument("--model", default=None,
                        help="save_pretrained folder to use; built there first if it has no config.json")
    parser.add_argument("--workers", type=int, default=2, help="grader workers (both sides)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.samples < 2 or args.steps < 1 or args.warmup < 0 or args.prompts < 1 or args.max_new_tokens < 1
            or args.repeats < 1):
        parser.error("need --samples >= 2, --steps >= 1, --warmup >= 0, --prompts >= 1, --max-new-tokens >= 1, "
                     "--repeats >= 1")
    return args


def main(argv=None, score: Score | None = None) -> dict:
    """Run both sides and print the comparison. ``score`` replaces the grader (tests only)."""
    trl = require_trl()
    args = parse_args(argv)
    torch.set_num_threads(1)
    import transformers

    from grader import Grader
    from selfregress.tasks import synthetic_splits

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tasks = synthetic_splits(seed=0).rl
    needed = (args.warmup + args.steps) * args.prompts
    if needed > len(tasks):
        sys.exit(f"step_vs_trl: (warmup + steps) x prompts = {needed} > {len(tasks)} RL tasks")
    with contextlib.ExitStack() as stack:
        grader = stack.enter_context(Grader(workers=args.workers))
        if score is None:
            score = lambda pairs: [v.reward for v in grader.grade_many(pairs)]  # noqa: E731
        if args.model and (Path(args.model) / "config.json").is_file():
            model_dir = args.model
        else:
            model_dir = args.model or stack.enter_context(tempfile.TemporaryDirectory(prefix="step_vs_trl_"))
            Path(model_dir).mkdir(parents=True, exist_ok=True)
            build_base(model_dir, grader)

        print(f"step_vs_trl: {args.prompts} prompts x {args.samples} samples per step, max_new_tokens "
              f"{args.max_new_tokens}, lr {args.lr:g}, temperature 1, no KL, {args.steps} timed step(s) "
              f"after {args.warmup} warm-up, {args.repeats} repetition(s) interleaved, CPU, 1 torch thread, "
              f"{args.workers} grader workers, TRL {trl.__version__}", flush=True)
        runs = []
        for repeat in range(args.repeats):
            ours = run_ours(model_dir, tasks, score, args)
            theirs = run_trl(model_dir, tasks, score, args)
            runs.append((ours, theirs))
            print(f"repetition {repeat + 1}: ours {ours['times']['total']:.3f} s/step, TRL "
                  f"{theirs['times']['total']:.3f} s/step, ratio {theirs['times']['total'] / ours['times']['total']:.2f}x",
                  flush=True)

    ratios = [theirs["times"]["total"] / ours["times"]["total"] for ours, theirs in runs]
    cpu_ratio = statistics.median(theirs["times"]["cpu"] / ours["times"]["cpu"] for ours, theirs in runs)
    ratio = statistics.median(ratios)
    ours, theirs = runs[ratios.index(sorted(ratios)[(len(ratios) - 1) // 2])]   # the median repetition
    o, t = ours["times"], theirs["times"]
    print(f"the median repetition (ratio {t['total'] / o['total']:.2f}x):")
    rows = [("s/step (median)", o["total"], t["total"]),
            ("  generation", o["generation"], t["generation"]),
            ("  grading", o["grading"], t["grading"]),
            ("  update", o["update"], t["update"])]
    print(f"{'':28s}{'ours':>10s}{'TRL':>10s}")
    for label, a, b in rows:
        print(f"{label:28s}{a:10.3f}{b:10.3f}")
    for label, a, b in (("    loss forward", o["loss forward"], t["loss forward"]),
                        ("    start-model forward", o.get("start-model forward", 0.0), 0.0),
                        ("    rollout bookkeeping", 0.0, t["scoring other"]),
                        ("    backward+optimizer+other", o["backward+optimizer+other"],
                         t["backward+optimizer+other"])):
        print(f"{label:28s}{a:10.3f}{b:10.3f}")
    print(f"{'mean reward':28s}{ours['reward']:10.3f}{theirs['reward']:10.3f}")
    print(f"{'mean completion tokens':28s}{ours['length']:10.1f}{theirs['length']:10.1f}")
    print(f"{'param delta (L2)':28s}{ours['delta']:10.3g}{theirs['delta']:10.3g}")
    print(f"ratio TRL/ours: median {ratio:.2f}x over {len(ratios)} repetition(s) "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 2.0x: {'met' if ratio >= 2.0 else 'NOT met'})")
    print(f"ratio TRL/ours in this process's CPU time per step (the grader's processes left out, "
          f"less sensitive to other load): median {cpu_ratio:.2f}x; load average {os.getloadavg()[0]:.1f}")
    for name, side in (("ours", ours), ("TRL", theirs)):
        if not side["delta"] > 0:
            print(f"WARNING: {name} did not change the model (every advantage was 0?)")
    return {"ours": ours, "trl": theirs, "ratio": ratio, "ratios": ratios, "cpu_ratio": cpu_ratio}


if __name__ == "__main__":
    main()
