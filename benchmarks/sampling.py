"""Sampling throughput: ``selfregress.sampling.sample`` against ``model.generate``, side by side.

Usage:
    python benchmarks/sampling.py                       # builds the testbed-sized tiny Qwen2
    python benchmarks/sampling.py --model PATH_OR_URI   # any model load_policy reads

The default model has the testbed's shape (Qwen2, hidden 128, 4 layers, 4 heads, 2 KV heads,
MLP 384, tied embeddings) and its tokenizer (``selfregress.tokenizer``, byte-level BPE, ~1000
tokens), trained here on the synthetic pretrain pool. It is fine-tuned for ``--sft-steps``
steps on that pool's reference programs so that it writes program-shaped completions that end
with EOS at realistic lengths (random weights almost never emit EOS). Prompts are held-out
synthetic statements. Two comparisons, each on the same prompts, batch and settings
(``--prompts`` x ``--samples`` completions, temperature 1, top-p 1, no top-k):

1. fixed length: EOS is suppressed for ``--max-new-tokens`` in both (``min_new_tokens``),
   so both produce exactly prompts x samples x max_new_tokens tokens: pure per-token speed.
2. natural stop: rows stop at EOS. Tokens/s counts the real tokens (up to and including
   EOS) of each; ``generate`` keeps stepping finished rows until the last row ends.

Runs alternate between the two samplers (``--repeats`` rounds) and medians are reported,
because this machine is shared. Reads: ``--model`` if given. Writes: nothing (a temp dir).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch

from selfregress.policy import build_prompt, load_policy
from selfregress.sampling import sample

def build_model(folder: str, pretrain, *, seed: int, sft_steps: int, vocab_size: int) -> None:
    """Train the tokenizer, build the tiny Qwen2, fine-tune it briefly, save it to ``folder``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from selfregress.policy import Policy
    from selfregress.tokenizer import train_tokenizer

    tokenizer = train_tokenizer((t.prompt + "\n" + s for t in pretrain for s in t.solutions),
                                vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=384, tie_word_embeddings=True,
        max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None))
    examples = []
    for task in pretrain:
        prompt = tokenizer(build_prompt(tokenizer, task.prompt))["input_ids"]
        program = tokenizer(task.solutions[0])["input_ids"]
        examples.append((prompt + program + [tokenizer.eos_token_id], len(prompt)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    started = time.perf_counter()
    for _ in range(sft_steps):
        batch = rng.sample(examples, 32)
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((32, width), tokenizer.pad_token_id)
        labels = torch.full((32, width), -100)
        for row, (seq, prompt_len) in enumerate(batch):
            ids[row, :len(seq)] = torch.tensor(seq)
            labels[row, prompt_len:len(seq)] = torch.tensor(seq[prompt_len:])
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"model: tiny Qwen2, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"vocabulary {len(tokenizer)}, {sft_steps} SFT steps ({time.perf_counter() - started:.0f} s, "
          f"final loss {loss.item():.2f})")
    Policy(model=model, tokenizer=tokenizer, device=torch.device("cpu")).save(folder)


def timed(run) -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, tokens) of ``run()`` (which returns tokens)."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = run()
    return time.perf_counter() - wall, time.process_time() - cpu, tokens


def run_sample(policy, prompts, args, min_new_tokens: int) -> int:
    samples = sample(policy, prompts, n=args.samples, temperature=1.0, top_p=1.0,
                     max_new_tokens=args.max_new_tokens, min_new_tokens=min_new_tokens, seed=args.seed)
    return int(samples.completion_mask.sum())


def run_generate(policy, prompts, args, min_new_tokens: int) -> int:
    """model.generate on the same left-padded batch; tokens counted up to and including EOS."""
    from selfregress.sampling import encode_prompts, pad_token_id, stop_token_ids

    ids, mask = (t.to(policy.device) for t in encode_prompts(policy.tokenizer, prompts))
    stops = stop_token_ids(policy.model, policy.tokenizer)
    torch.manual_seed(args.seed)
    with torch.inference_mode():
        out = policy.model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
            max_new_tokens=args.max_new_tokens, min_new_tokens=min_new_tokens,
            num_return_sequences=args.samples, pad_token_id=pad_token_id(policy.tokenizer),
            eos_token_id=stops)
    new = out[:, ids.shape[1]:]                                              # (B, T)
    is_stop = torch.isin(new, torch.tensor(stops, device=new.device))
    # A row's length: up to and including its first stop token, else all of it.
    lengths = torch.where(is_stop.any(1), is_stop.float().argmax(1) + 1, new.shape[1])
    return int(lengths.sum())


def compare(policy, prompts, args, min_new_tokens: int, label: str) -> None:
    runs = {"sample": [], "generate": []}
    for _ in range(args.repeats):                       # alternate, so load drifts hit both
        runs["sample"].append(timed(lambda: run_sample(policy, prompts, args, min_new_tokens)))
        runs["generate"].append(timed(lambda: run_generate(policy, prompts, args, min_new_tokens)))
    wall, cpu = {}, {}
    for name, results in runs.items():
        wall[name] = statistics.median(tokens / seconds for seconds, _, tokens in results)
        cpu[name] = statistics.median(tokens / seconds for _, seconds, tokens in results)
        print(f"  {label} {name:8s}: {statistics.median(r[0] for r in results):5.2f} s wall, "
              f"{statistics.median(r[2] for r in results):6.0f} tokens, {wall[name]:6.0f} tokens/s "
              f"(CPU time: {cpu[name]:6.0f} tokens/s; wall runs {', '.join(f'{r[0]:.2f}' for r in results)} s)")
    print(f"  {label} speed-up: {wall['sample'] / wall['generate']:.2f}x tokens/s "
          f"({cpu['sample'] / cpu['generate']:.2f}x in CPU time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a folder, hub id or models:/ URI (default: build the tiny "
                                            "testbed model)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for tiny models)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=100)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from selfregress.tasks import synthetic_splits

    splits = synthetic_splits(args.seed, n_pretrain=4000, n_rl=0, n_eval=args.prompts + 64, n_test=0)
    with tempfile.TemporaryDirectory() as folder:
        if args.model is None:
            build_model(folder, splits.pretrain, seed=args.seed, sft_steps=args.sft_steps,
                        vocab_size=args.vocab_size)
        policy = load_policy(args.model or folder)
    prompts = [build_prompt(policy.tokenizer, t.prompt, t.starter_code) for t in splits.eval]
    prompts, eval_prompts = prompts[:args.prompts], prompts[args.prompts:]
    print(f"batch: {args.prompts} prompts x {args.samples} samples, max_new_tokens {args.max_new_tokens}, "
          f"temperature 1, top_p 1; torch threads {torch.get_num_threads()}, device {policy.device}")
    run_sample(policy, prompts[:2], args, 0)                                   # warm-up
    compare(policy, prompts, args, args.max_new_tokens, "fixed length")
    compare(policy, prompts, args, 0, "natural stop")

    # The evaluation's sampling part: 64 tasks x 4 samples (grading is the grader's benchmark).
    runs = [timed(lambda: run_eval_sampling(policy, eval_prompts, args, seed)) for seed in range(args.repeats)]
    print(f"eval sampling: 64 tasks x 4 samples, max_new_tokens {args.max_new_tokens}: "
          f"{statistics.median(r[0] for r in runs):.2f} s wall (runs {', '.join(f'{r[0]:.2f}' for r in runs)} s; "
          f"mean completion {statistics.mean(r[2] for r in runs) / 256:.0f} tokens; "
          f"{torch.get_num_threads()} torch thread(s))")


def run_eval_sampling(policy, prompts, args, seed: int) -> int:
    samples = sample(policy, prompts, n=4, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=seed)
    return int(samples.completion_mask.sum())

if __name__ == "__main__":
    main()
