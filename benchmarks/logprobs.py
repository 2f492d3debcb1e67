"""Chunked ``sampled_logprobs`` against ``log_softmax(...).gather``: peak memory and time, side by side.

Usage:
    python benchmarks/logprobs.py [--batch 32 --steps 430 --vocab 49152] [--threads 1] [--dtype float32]

The default shape is a real model's: 32 completions x 430 tokens x SmolLM2's 49,152-token
vocabulary (2.7 GB of float32 logits). Each method runs in its own subprocess, forward and
backward, on the same seeded logits (a leaf with grad, standing for the lm_head's output):

- ``log_softmax``: what ``completion_logprobs`` does today: (logits / T).log_softmax(-1),
  gather, and the entropy -sum p log p under no_grad; top_p is ignored.
- ``chunked``: ``sampled_logprobs_and_entropy`` at top_p = 1 (the same distribution).
- ``chunked top_p``: the same at top_p = 0.8 (nucleus included; no log_softmax equivalent).
  Random logits are its worst case: their nucleus holds thousands of tokens, so every row
  takes the full-sort fallback; a trained model's peaked rows mostly stay in the top-64 path.

Peak memory is the process's peak RSS (CPU) or torch.cuda.max_memory_allocated (GPU) above
what it held once the logits existed, so it counts only what the method adds. Reads and writes
nothing.

Measured here (2 shared CPU cores, load average 11-17 from other jobs, so times are noisy),
three runs, forward + backward, float32:
    log_softmax      78.8 / 36.1 / 68.9 s   peak extra 8.12 GB (3.0x the logits)
    chunked          56.0 / 54.7 / 56.9 s   peak extra 3.06-3.10 GB (the grad itself, 2.71, + chunks)
    chunked top_p    420.8 s (one run)      peak extra 3.37 GB (random logits: full-sort fallback)
Same sum of log-probs and mean entropy to the printed digits.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

METHODS = ("log_softmax", "chunked", "chunked top_p")


def measure(method: str, args) -> dict[str, float]:
    from selfregress.logprobs import sampled_logprobs_and_entropy

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.steps, args.vocab)
    logits = torch.empty(shape, dtype=getattr(torch, args.dtype), device=device).normal_(0, 2, generator=gen)
    logits.requires_grad_()
    tokens = torch.randint(0, args.vocab, shape[:2], generator=gen, device=device)
    temperature = 0.7
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if method == "log_softmax":
        log_probs = (logits.float() / temperature).log_softmax(-1)                  # (B, T, V)
        logprobs = log_probs.gather(-1, tokens[..., None])[..., 0]
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1)
    else:
        top_p = 0.8 if method == "chunked top_p" else 1.0
        logprobs, entropy = sampled_logprobs_and_entropy(logits, tokens, temperature, top_p)
    logprobs.sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_gb": peak / 1e9, "logits_gb": logits.numel() * logits.element_size() / 1e9,
            "checksum": float(logprobs.detach().double().sum()), "entropy": float(entropy.double().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=430)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)   # the child process
    args = parser.parse_args()
    if args.method:
        print(json.dumps(measure(args.method, args)))
        return
    print(f"B={args.batch} T={args.steps} V={args.vocab} {args.dtype}, forward + backward, {args.threads} thread(s)")
    print(f"{'method':16s} {'time s':>8s} {'peak extra GB':>14s} {'logits GB':>10s} {'sum logprobs':>14s} {'mean H':>8s}")
    for method in args.methods:
        out = subprocess.run([sys.executable, __file__, "--method", method] + sys.argv[1:],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{method:16s} {r['seconds']:8.2f} {r['peak_gb']:14.2f} {r['logits_gb']:10.2f} "
              f"{r['checksum']:14.1f} {r['entropy']:8.4f}", flush=True)


if __name__ == "__main__":
    main()
