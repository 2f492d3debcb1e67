"""Peak memory and checkpoint size of one RL update on a real model: full fine-tuning vs LoRA.

Usage:
    python benchmarks/memory_real.py --model PATH_OR_URI [--repeats 3] [--rank 8] [--micro-batches 0,8]

Each (mode, repeat) runs in a fresh process, so that ``getrusage(RUSAGE_SELF).ru_maxrss`` is
that mode's own high-water mark: load the model, then one forward + backward + AdamW step of
the project's update (``step.whole_batch_backward``, or ``step.micro_batch_backward`` with
``--micro-batches M``: M rows per forward/backward, gradients accumulated; a REINFORCE update with
rewards 1, 0, 1, 0, ...) on ``--batch`` sequences of ``--prompt-tokens`` + ``--completion-tokens``
random token ids (the values do not change the memory), then save one checkpoint: the full
``save_pretrained`` folder, or the adapter only (``selfregress.lora.save_adapter``).
Reads: the model. Writes: nothing that outlives it (a temp dir).

glibc's malloc raises its mmap threshold dynamically (up to 32 MB) as large blocks are
freed, after which activations come from the heap and fragment it: on SmolLM2 the LoRA
step's peak RSS was 7.0-7.2 GB with the default and 4.6 GB with ``MALLOC_MMAP_THRESHOLD_=1048576``
(full fine-tuning: 5.5 GB and 4.9 GB). Set that variable to measure the tensors, not the heap.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    import torch

    from selfregress import lora
    from selfregress.policy import Policy, load_policy
    from selfregress.sampling import Samples
    from selfregress.step import micro_batch_backward, whole_batch_backward
    from selfregress.updates import make_update

    torch.set_num_threads(args.threads)
    policy = load_policy(args.model, device="cpu")
    after_load = rss_now_mb()
    model, adapted = policy.model, None
    if args.mode == "lora":
        adapted = lora.attach_lora(model, rank=args.rank, alpha=2 * args.rank)
        model = lora.policy_model(adapted)
    trainable, total = lora.count_parameters(model)

    g = torch.Generator().manual_seed(0)
    batch, width = args.batch, args.completion_tokens
    vocab = model.config.vocab_size
    samples = Samples(
        prompt_ids=torch.randint(vocab, (batch, args.prompt_tokens), generator=g),
        prompt_mask=torch.ones(batch, args.prompt_tokens, dtype=torch.long),
        completion_ids=torch.randint(vocab, (batch, width), generator=g),
        completion_mask=torch.ones(batch, width, dtype=torch.long),
        logprobs=torch.zeros(batch, width), texts=[""] * batch, prompt_index=torch.arange(batch))
    optimizer = torch.optim.AdamW(lora.trainable_parameters(model), lr=1e-5)
    update = make_update("reinforce", kl_beta=0.0, kl_estimator="k1", max_new_tokens=width, ewc_lambda=0.0,
                         baseline="none", temperature=1.0, top_p=1.0)
    rewards = (torch.arange(batch) % 2 == 0).float()
    policy.model = model
    backward = micro_batch_backward if 0 < args.micro_batch < batch else whole_batch_backward
    started = time.perf_counter()
    backward(policy, None, update, samples, rewards, args.micro_batch, group_size=1, temperature=1.0,
             top_p=1.0, max_new_tokens=width)
    optimizer.step()
    step_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024       # KiB on Linux

    with tempfile.TemporaryDirectory() as folder:
        if adapted is None:
            Policy(model=model, tokenizer=policy.tokenizer, device=policy.device).save(folder)
            files = [f for f in Path(folder).rglob("*") if f.is_file()]
        else:
            lora.save_adapter(adapted, folder, base_ref=args.model)
            files = [f for f in Path(folder).rglob("*") if f.is_file()]
        checkpoint_bytes = sum(f.stat().st_size for f in files)
    print(json.dumps({"mode": args.mode, "micro_batch": args.micro_batch, "peak_rss_mb": round(peak_mb), "rss_after_load_mb": round(after_load),
                      "step_s": round(step_s, 1), "trainable": trainable, "total": total,
                      "checkpoint_bytes": checkpoint_bytes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a folder or models:/ URI load_policy reads")
    parser.add_argument("--mode", choices=("full", "lora"), help="run one measurement (the child)")
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--completion-tokens", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batches", default="0", help="rows per forward/backward, one or more (0: all)")
    parser.add_argument("--micro-batch", type=int, default=0, help=argparse.SUPPRESS)   # the child's
    args = parser.parse_args()
    if args.mode:
        return child(args)
    print(f"one forward + backward + AdamW step, {args.batch} x ({args.prompt_tokens} + "
          f"{args.completion_tokens}) tokens, {args.threads} threads; LoRA rank {args.rank}, all linear layers")
    results: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for mode, micro in [(m, int(k)) for m in args.modes.split(",") for k in args.micro_batches.split(",")]:
            command = [sys.executable, __file__, "--mode", mode, "--model", args.model, "--micro-batch", str(micro),
                       "--rank", str(args.rank), "--batch", str(args.batch), "--threads", str(args.threads),
                       "--prompt-tokens", str(args.prompt_tokens),
                       "--completion-tokens", str(args.completion_tokens)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            record = json.loads(out.strip().splitlines()[-1])
            results.setdefault(f"{mode}/{micro}", []).append(record)
            print(f"repeat {repeat + 1}  {json.dumps(record)}", flush=True)
    print(f"\n{'mode/micro-batch':<16} {'peak RSS MB (median, min-max)':>30} {'step s (median, min-max)':>26} "
          f"{'trainable':>12} {'checkpoint bytes':>17}")
    for mode, records in results.items():
        peaks = [r["peak_rss_mb"] for r in records]
        steps = [r["step_s"] for r in records]
        print(f"{mode:<16} {statistics.median(peaks):>12.0f} ({min(peaks)}-{max(peaks)}){'':>6} "
              f"{statistics.median(steps):>10.1f} ({min(steps)}-{max(steps)}){'':>4} "
              f"{records[0]['trainable']:>12,} {records[0]['checkpoint_bytes']:>17,}")


if __name__ == "__main__":
    main()
