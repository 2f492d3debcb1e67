"""The stability audit: is a logged collapse real, or evaluation noise?

Per campaign of each chain, the peak and end checkpoints are re-evaluated with fresh seeds,
the first evaluation's programs graded again (the grader's consistency), and the logged
peak-to-end gap set against the evaluation noise. Needs the checkpoints (so the chains' own
store) and samples from them: torch is imported only when ``audit`` runs.
"""

from __future__ import annotations

import numpy as np

from selfregress import metric_keys as K
from selfregress.chain_config import logged_config
from selfregress.records import split_tasks
from selfregress.stats import slope


AUDIT_SEED = 1_000_003   # far from every seed a chain uses


def gap_in_noise(gap: float, noise: float) -> float:
    """The gap in units of the evaluation noise's sd. With no noise at all (a policy that fails,
    or passes, every re-evaluation alike) any positive gap is infinitely many units, and a zero
    gap is zero: 0/0 is no evidence of a collapse."""
    if noise > 0:
        return gap / noise
    return float("inf") if gap > 0 else 0.0


def audit(chains: list, grader, repeats: int, log=print) -> list[dict]:
    """Per campaign of each ``report.Chain``: re-evaluate its peak and end checkpoints ``repeats`` times with fresh seeds,
    re-grade the first evaluation's programs, and set the logged gap against the noise."""
    from selfregress.evaluation import evaluate
    from selfregress.policy import load_policy

    rows = []
    for chain in chains:
        config = logged_config(chain.params)
        _, eval_tasks = split_tasks(config)
        options = dict(samples=config.eval_samples, temperature=config.temperature, top_p=config.top_p,
                       max_new_tokens=config.max_new_tokens)
        for record, train in zip(chain.records, chain.train):
            peak_step = int(np.argmax(record.pass_at_1))
            end_step = record.last_step
            if peak_step not in record.checkpoints:   # checkpoints=none keeps only campaign ends
                log(f"audit {chain.condition} s{chain.seed} c{record.index}: no checkpoint at the "
                    f"peak (step {peak_step}); skipped")
                continue
            scores, same, graded = {}, 0, 0
            for name, step in (("peak", peak_step), ("end", end_step)):
                policy = load_policy(f"models:/{record.checkpoints[step]}")
                values = []
                for r in range(repeats):
                    result = evaluate(policy, eval_tasks, grader, seed=AUDIT_SEED + 7919 * r, **options)
                    values.append(result.pass_at_1)
                    if r == 0:   # the grader's consistency: the same programs, graded again
                        pairs = [(p, eval_tasks[j // config.eval_samples]) for j, p in enumerate(result.programs)]
                        again = np.array([v.passed for v in grader.grade_many(pairs)], dtype=bool)
                        same += int((again == result.passed).sum())
                        graded += again.size
                scores[name] = values
            noise = float(np.sqrt((np.var(scores["peak"], ddof=1) + np.var(scores["end"], ddof=1)) / 2))
            logged_gap = max(record.pass_at_1) - record.pass_at_1[-1]
            rewards = [v for _, v in sorted(train.get(K.TRAIN_REWARD_MEAN, {}).items())]
            half = len(rewards) // 2
            rows.append({
                "condition": chain.condition, "seed": chain.seed, "campaign": record.index,
                "peak_step": peak_step, "end_step": end_step, "logged_gap": logged_gap,
                "reeval_peak": float(np.mean(scores["peak"])), "reeval_end": float(np.mean(scores["end"])),
                "reeval_gap": float(np.mean(scores["peak"]) - np.mean(scores["end"])),
                "eval_noise_sd": noise, "gap_in_noise_units": gap_in_noise(logged_gap, noise),
                "grader_consistency": same / max(graded, 1),
                "reward_mean": float(np.mean(rewards)) if rewards else float("nan"),
                "reward_sd": float(np.std(rewards)) if rewards else float("nan"),
                "reward_slope": slope(rewards),
                "reward_first_half": float(np.mean(rewards[:half])) if half else float("nan"),
                "reward_second_half": float(np.mean(rewards[half:])) if rewards[half:] else float("nan"),
            })
            log(f"audit {chain.condition} s{chain.seed} c{record.index}: gap {logged_gap:.3f} logged, "
                f"{rows[-1]['reeval_gap']:.3f} re-evaluated; noise sd {noise:.3f}")
    return rows


def audit_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    consistency = sum(r["grader_consistency"] for r in rows) / len(rows)
    noise = float(np.sqrt(np.mean([r["eval_noise_sd"] ** 2 for r in rows])))
    lines = ["## Stability audit", "",
             f"- grader consistency (identical verdicts when the same programs are graded again): "
             f"{consistency:.4f}",
             f"- evaluation noise (sd of pass@1 over fresh sampling seeds, pooled): {noise * 100:.2f} points",
             "", "| condition | campaigns | mean logged gap | mean re-evaluated gap | gaps > 2 sd noise "
             "| re-evaluated gap > 0 | mean reward slope / step |", "|---|---|---|---|---|---|---|"]
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["condition"], []).append(r)
    for condition, rs in by.items():
        lines.append(f"| {condition} | {len(rs)} | {np.mean([r['logged_gap'] for r in rs]) * 100:.1f} "
                     f"| {np.mean([r['reeval_gap'] for r in rs]) * 100:.1f} "
                     f"| {sum(r['gap_in_noise_units'] > 2 for r in rs)}/{len(rs)} "
                     f"| {sum(r['reeval_gap'] > 0 for r in rs)}/{len(rs)} "
                     f"| {np.mean([r['reward_slope'] for r in rs]):+.4f} |")
    return "\n".join(lines)
