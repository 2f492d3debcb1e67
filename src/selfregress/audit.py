"""The stability audit: is a collapse real, or evaluation noise? Measured on the report split.

Per campaign of each chain, the peak (chosen on the selection split, ES's rule) and end
checkpoints are re-evaluated ``repeats`` times on the report split with fresh sampling seeds,
and the first evaluation's programs graded again (the grader's consistency). Per checkpoint:

- ``seed_sd``: the sd of pass@1 over the fresh sampling seeds (the tasks fixed);
- ``task_sd``: the sd of pass@1 over resampled report tasks, sqrt(Var_i p_i / N) with p_i each
  task's pass rate over all its re-evaluated samples;
- ``collapsed``: no sample passed in any re-evaluation. Such a checkpoint has no noise at all
  (every sd is 0), so pooling it would bias the noise low: the pooled figures leave it out, and
  the collapsed checkpoints are counted apart.

The headline "gap beyond noise" is the *cross-fit* gap, mean re-evaluated report(peak) -
report(end), over its sd, sd_i(d_i) / sqrt(N) with d_i = p_i(peak) - p_i(end) (the same tasks,
so paired; resampling tasks and sampling noise are both in it). The logged (selected) gap, the
max of the selection curve minus its end, passes a 2-sd test about 45% of the time under no
change, and is kept only as a labelled column. Needs the checkpoints (so the chains' own store)
and samples from them: torch is imported only when ``audit`` runs.
"""

from __future__ import annotations

import numpy as np

from selfregress import metric_keys as K
from selfregress.chain_config import logged_config
from selfregress.controllers import peak_step as selection_peak
from selfregress.records import report_split
from selfregress.stats import slope


AUDIT_SEED = 1_000_003   # far from every seed a chain uses


def gap_in_noise(gap: float, noise: float) -> float:
    """The gap in units of the evaluation noise's sd. With no noise at all (a policy that fails,
    or passes, every re-evaluation alike) any positive gap is infinitely many units, and a zero
    gap is zero: 0/0 is no evidence of a collapse."""
    if noise > 0:
        return gap / noise
    return float("inf") if gap > 0 else 0.0


def checkpoint_noise(successes: np.ndarray, samples: int) -> dict[str, float]:
    """successes: (repeats, N) passing samples per task in each re-evaluation, of ``samples`` each.

    pass@1 per repeat = successes.sum(1) / (N samples); seed_sd = its sd over repeats (ddof 1);
    p_i = successes[:, i].sum() / (repeats samples); task_sd = sqrt(var_i(p_i) / N) (ddof 1)."""
    repeats, n = successes.shape
    per_repeat = successes.sum(axis=1) / (n * samples)                 # (repeats,)
    per_task = successes.sum(axis=0) / (repeats * samples)             # (N,)
    return {"pass_at_1": float(per_repeat.mean()), "seed_sd": float(per_repeat.std(ddof=1)),
            "task_sd": float(np.sqrt(per_task.var(ddof=1) / n)), "collapsed": bool(successes.sum() == 0),
            "per_task": per_task}


def crossfit_gap(peak: np.ndarray, end: np.ndarray) -> tuple[float, float]:
    """(mean gap, its sd) from per-task pass rates (N,) at the peak and the end, paired by task:
    mean(d), sd(d) / sqrt(N) with d = peak - end (ddof 1)."""
    d = peak - end
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def audit(chains: list, grader, repeats: int, log=print) -> list[dict]:
    """Per campaign of each ``report.Chain``: re-evaluate its selection-chosen peak and its end
    ``repeats`` times on the report split, re-grade the first evaluation's programs, and set the
    cross-fit gap against its noise."""
    from selfregress.evaluation import evaluate
    from selfregress.policy import load_policy

    rows = []
    for chain in chains:
        config = logged_config(chain.params)
        tasks = report_split(config)
        options = dict(samples=config.report_samples, temperature=config.temperature, top_p=config.top_p,
                       max_new_tokens=config.max_new_tokens)
        for record, train in zip(chain.records, chain.train):
            peak_step, end_step = selection_peak(record.pass_at_1, config.es_min_delta), record.last_step
            if peak_step not in record.checkpoints:   # checkpoints=none keeps only campaign ends
                log(f"audit {chain.condition} s{chain.seed} c{record.index}: no checkpoint at the "
                    f"peak (step {peak_step}); skipped")
                continue
            noise, same, graded = {}, 0, 0
            for name, step in (("peak", peak_step), ("end", end_step)):
                policy = load_policy(f"models:/{record.checkpoints[step]}", **config.policy_options())
                successes = []
                for r in range(repeats):
                    result = evaluate(policy, tasks, grader, seed=AUDIT_SEED + 7919 * r, **options)
                    successes.append(result.successes)
                    if r == 0:   # the grader's consistency: the same programs, graded again
                        pairs = [(p, tasks[j // config.report_samples]) for j, p in enumerate(result.programs)]
                        again = np.array([v.passed for v in grader.grade_many(pairs)], dtype=bool)
                        same += int((again == result.passed).sum())
                        graded += again.size
                noise[name] = checkpoint_noise(np.array(successes), config.report_samples)
            gap, gap_sd = crossfit_gap(noise["peak"]["per_task"], noise["end"]["per_task"])
            logged_gap = max(record.pass_at_1) - record.pass_at_1[-1]
            rewards = [v for _, v in sorted(train.get(K.TRAIN_REWARD_MEAN, {}).items())]
            half = len(rewards) // 2
            rows.append({
                "condition": chain.condition, "seed": chain.seed, "campaign": record.index,
                "peak_step": peak_step, "end_step": end_step,
                **{f"{name}_{key}": noise[name][key] for name in ("peak", "end")
                   for key in ("pass_at_1", "seed_sd", "task_sd", "collapsed")},
                "crossfit_gap": gap, "crossfit_gap_sd": gap_sd, "gap_in_noise_units": gap_in_noise(gap, gap_sd),
                "logged_gap": logged_gap,
                "grader_consistency": same / max(graded, 1),
                "reward_mean": float(np.mean(rewards)) if rewards else float("nan"),
                "reward_sd": float(np.std(rewards)) if rewards else float("nan"),
                "reward_slope": slope(rewards),
                "reward_first_half": float(np.mean(rewards[:half])) if half else float("nan"),
                "reward_second_half": float(np.mean(rewards[half:])) if rewards[half:] else float("nan"),
            })
            log(f"audit {chain.condition} s{chain.seed} c{record.index}: cross-fit gap {gap:.3f} "
                f"(sd {gap_sd:.3f}); logged (selected) gap {logged_gap:.3f}")
    return rows


def audit_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    consistency = sum(r["grader_consistency"] for r in rows) / len(rows)
    checkpoints = [(r[f"{n}_seed_sd"], r[f"{n}_task_sd"]) for r in rows for n in ("peak", "end")
                   if not r[f"{n}_collapsed"]]
    collapsed = sum(r[f"{n}_collapsed"] for r in rows for n in ("peak", "end"))
    pooled = (lambda i: float(np.sqrt(np.mean([c[i] ** 2 for c in checkpoints]))) * 100 if checkpoints else float("nan"))
    lines = ["## Stability audit (report split)", "",
             f"- grader consistency (identical verdicts when the same programs are graded again): {consistency:.4f}",
             f"- noise per checkpoint, pooled over the {len(checkpoints)} that are not collapsed: "
             f"{pooled(0):.2f} points over fresh sampling seeds, {pooled(1):.2f} over resampled report tasks",
             f"- collapsed checkpoints (no sample passed in any re-evaluation; no noise, left out of the "
             f"pooled figures): {collapsed} of {2 * len(rows)}",
             "", "| condition | campaigns | collapsed ends | mean cross-fit gap, points | cross-fit gaps > 2 sd "
             "| cross-fit gap > 0 | *mean logged (selected) gap* | mean reward slope / step |",
             "|---|---|---|---|---|---|---|---|"]
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["condition"], []).append(r)
    for condition, rs in by.items():
        lines.append(f"| {condition} | {len(rs)} | {sum(r['end_collapsed'] for r in rs)} "
                     f"| {np.mean([r['crossfit_gap'] for r in rs]) * 100:.1f} "
                     f"| {sum(r['gap_in_noise_units'] > 2 for r in rs)}/{len(rs)} "
                     f"| {sum(r['crossfit_gap'] > 0 for r in rs)}/{len(rs)} "
                     f"| *{np.mean([r['logged_gap'] for r in rs]) * 100:.1f}* "
                     f"| {np.mean([r['reward_slope'] for r in rs]):+.4f} |")
    return "\n".join(lines)
