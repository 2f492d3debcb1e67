"""The paper's table, plots and stability audit, read back from MLflow.

Reads: FINISHED chain runs of the experiment (optionally one sweep's, or any MLflow filter),
their campaign runs' curves and, for the audit, their peak and end checkpoints.
Writes: a report run (``selfregress.kind=report``) with ``report.md``, ``table.csv``, the plots
and, with ``audit=true``, ``audit.csv``; the markdown is also printed.

Per condition: the mean end-of-chain pass@1 with a 95% bootstrap CI over seeds; the difference
from the baseline condition with a paired bootstrap CI (pairs matched by seed); k/n seeds
improved; the mean within-campaign peak-to-end gap; and the mean peak pass@1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfregress import metric_keys as K
from selfregress.chain import CONDITIONS, campaign_records, chain_curve, logged_config, split_tasks
from selfregress.config import option
from selfregress.errors import UserError
from selfregress.stats import Interval, bootstrap_band, bootstrap_ci, paired_bootstrap_ci, slope

TRAIN_SERIES = (K.TRAIN_ENTROPY, K.TRAIN_DISTINCT_RATIO, K.TRAIN_REWARD_MEAN)


@dataclass(frozen=True)
class ReportConfig:
    """Every field is an MLproject parameter of `report`."""
    sweep_id: str = option("", "only the chains of this sweep (default: every finished chain)")
    filter: str = option("", "an extra MLflow filter on the chain runs, e.g. tags.model = '...'")
    baseline: str = option("naive", "the condition every other one is paired against", tuple(CONDITIONS))
    resamples: int = option(10_000, "bootstrap resamples")
    seed: int = option(0, "bootstrap seed")
    audit: str = option("false", "re-evaluate every campaign's peak and end checkpoints: is the collapse real?",
                        ("true", "false"))
    audit_repeats: int = option(3, "audit: fresh-seed re-evaluations per checkpoint")
    out: str = option("report", "local folder for report.md, table.csv and the plots")

    def validate(self) -> None:
        if self.resamples < 100:
            raise UserError(f"'resamples' must be at least 100, got {self.resamples}")
        if self.audit_repeats < 2:
            raise UserError(f"'audit_repeats' must be at least 2 (a noise estimate needs two), got {self.audit_repeats}")


@dataclass
class Chain:
    run_id: str
    chain_id: str
    condition: str
    seed: int
    params: dict
    end: float
    peak: float
    gap: float
    records: list = field(default_factory=list)          # CampaignRecords, in order
    train: list = field(default_factory=list)            # per campaign: key -> {step: value}

    @property
    def curve(self) -> list[float]:
        points = chain_curve(self.records)
        return [points[s] for s in sorted(points)]


def search_chains(search, sweep_id: str, extra: str):
    """FINISHED chain runs (of one sweep, and matching an extra MLflow filter) via ``search``."""
    clauses = ["tags.`selfregress.kind` = 'chain'", "attributes.status = 'FINISHED'"]
    if sweep_id:
        clauses.append(f"tags.sweep_id = '{sweep_id}'")
    if extra:
        clauses.append(extra)
    try:
        return search(" and ".join(clauses))
    except Exception as e:  # a malformed user filter: MlflowException, or a REST error
        raise UserError(f"MLflow refused the run filter ({str(e).splitlines()[0][:200]}): check "
                        f"sweep_id={sweep_id!r} and filter={extra!r}") from None


def load_chains(store, config: ReportConfig) -> list[Chain]:
    """The newest FINISHED chain per (condition, seed) that matches the selection."""
    frame = search_chains(store.runs_frame, config.sweep_id, config.filter)
    if frame.empty:
        where = f"sweep {config.sweep_id}" if config.sweep_id else "this experiment"
        raise UserError(f"report: no finished chain runs in {where}: run `sweep` or `main` first, "
                        "or check --experiment / --sweep_id")
    chains: dict[tuple[str, int], Chain] = {}
    for row in frame.to_dict("records"):   # newest first: the first of each (condition, seed) wins
        key = (row["tags.condition"], int(row["tags.seed"]))
        if key in chains:
            continue
        params = {k[len("params."):]: v for k, v in row.items() if k.startswith("params.") and v is not None}
        chains[key] = Chain(row["run_id"], row["tags.chain_id"], key[0], key[1], params,
                            end=row[f"metrics.{K.CHAIN_END}"], peak=row[f"metrics.{K.CHAIN_PEAK}"],
                            gap=row[f"metrics.{K.CHAIN_GAP}"])
    for chain in chains.values():
        chain.records = campaign_records(store, chain.chain_id)
        chain.train = [{key: store.metric_history(r.run_id, key) for key in TRAIN_SERIES} for r in chain.records]
    return sorted(chains.values(), key=lambda c: (list(CONDITIONS).index(c.condition), c.seed))


# ---- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    condition: str
    seeds: list[int]
    end: Interval
    diff: Interval              # n = number of seed pairs (0: no baseline to pair with)
    improved: int               # seeds where the condition's end beats the baseline's
    gap: float
    peak: float
    unpaired: list[int]         # this condition's seeds that the baseline lacks


def table(chains: list[Chain], baseline: str = "naive", resamples: int = 10_000, seed: int = 0) -> list[Row]:
    by = {}
    for c in chains:
        by.setdefault(c.condition, {})[c.seed] = c
    base = by.get(baseline, {})
    rows = []
    for condition, runs in by.items():
        seeds = sorted(runs)
        paired = [s for s in seeds if s in base]
        ends = [runs[s].end for s in seeds]
        diff = (paired_bootstrap_ci([runs[s].end for s in paired], [base[s].end for s in paired],
                                    resamples=resamples, seed=seed)
                if condition != baseline else Interval(0.0, 0.0, 0.0, len(seeds)))
        rows.append(Row(condition, seeds, bootstrap_ci(ends, resamples=resamples, seed=seed), diff,
                        improved=sum(runs[s].end > base[s].end for s in paired),
                        gap=float(np.mean([runs[s].gap for s in seeds])),
                        peak=float(np.mean([runs[s].peak for s in seeds])),
                        unpaired=[s for s in seeds if s not in base]))
    return rows


def markdown_table(rows: list[Row], baseline: str) -> str:
    lines = [f"| condition | seeds | end pass@1 % [95% CI] | diff vs {baseline}, points [paired 95% CI] "
             "| improved | peak-to-end gap, points | peak pass@1 % |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = "-" if r.condition == baseline or r.diff.n == 0 else r.diff.text()
        improved = "-" if r.condition == baseline or r.diff.n == 0 else f"{r.improved}/{r.diff.n}"
        lines.append(f"| {r.condition} | {len(r.seeds)} | {r.end.text()} | {diff} | {improved} "
                     f"| {r.gap * 100:.1f} | {r.peak * 100:.1f} |")
    notes = [f"- {r.condition}: seeds {', '.join(map(str, r.unpaired))} have no {baseline} chain to pair with"
             for r in rows if r.unpaired and r.condition != baseline]
    return "\n".join(lines + ([""] + notes if notes else []))


def csv_rows(rows: list[Row]) -> list[dict]:
    return [{"condition": r.condition, "n_seeds": len(r.seeds), "seeds": " ".join(map(str, r.seeds)),
             "end_mean": r.end.mean, "end_low": r.end.low, "end_high": r.end.high,
             "diff_mean": r.diff.mean, "diff_low": r.diff.low, "diff_high": r.diff.high, "n_pairs": r.diff.n,
             "improved": r.improved, "mean_gap": r.gap, "mean_peak": r.peak,
             "unpaired": " ".join(map(str, r.unpaired))} for r in rows]


# ---- plots -------------------------------------------------------------------------------------
def plot_all(chains: list[Chain], folder: Path, resamples: int, seed: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, list[Chain]] = {}
    for c in chains:
        by.setdefault(c.condition, []).append(c)
    paths = []

    fig, ax = plt.subplots(figsize=(10, 5))
    for condition, runs in by.items():
        mean, low, high = bootstrap_band([c.curve for c in runs], resamples=resamples, seed=seed)
        x = np.arange(mean.size)
        ax.plot(x, mean, label=f"{condition} (n={len(runs)})")
        ax.fill_between(x, low, high, alpha=0.2)
    ax.set(xlabel="global step (each campaign restart is its own step)", ylabel="held-out pass@1",
           title="pass@1 over the chain: mean over seeds, 95% bootstrap band")
    ax.legend()
    paths.append(_save(fig, folder / "pass_at_1_by_condition.png"))

    fig, axes = plt.subplots(1, len(by), figsize=(4 * len(by), 3.5), squeeze=False, sharey=True)
    for ax, (condition, runs) in zip(axes[0], by.items()):
        for label, pick, style in (("start", lambda r: r.pass_at_1[0], "o-"),
                                   ("peak", lambda r: max(r.pass_at_1), "^-"),
                                   ("end", lambda r: r.pass_at_1[-1], "v-")):
            per_seed = [[pick(r) for r in c.records] for c in runs]
            mean, _, _ = bootstrap_band(per_seed, resamples=200, seed=seed)
            ax.plot(np.arange(mean.size), mean, style, label=label)
            for values in per_seed:
                ax.plot(np.arange(len(values)), values, style[0], alpha=0.2, color=ax.lines[-1].get_color())
        ax.set(title=condition, xlabel="campaign")
    axes[0][0].set_ylabel("pass@1 (mean; dots: seeds)")
    axes[0][0].legend()
    paths.append(_save(fig, folder / "campaign_start_peak_end.png"))

    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for condition, runs in by.items():
        axes[0].plot(_column_means([c.curve for c in runs]), label=condition)
        for ax, key in zip(axes[1:], (K.TRAIN_ENTROPY, K.TRAIN_DISTINCT_RATIO)):
            ax.plot(_column_means([global_series(c, key) for c in runs]), label=condition)
    for ax, label in zip(axes, ("pass@1", K.TRAIN_ENTROPY, K.TRAIN_DISTINCT_RATIO)):
        ax.set_ylabel(label)
    axes[0].set_title("pass@1 beside the policy's entropy and its share of distinct programs (means over seeds)")
    axes[-1].set_xlabel("global step")
    axes[0].legend()
    paths.append(_save(fig, folder / "diagnostics.png"))
    return paths


def global_series(chain: Chain, key: str) -> list[float]:
    """A train/* metric at the chain's global steps (NaN at each campaign's step 0: no update there)."""
    out = []
    for record, train in zip(chain.records, chain.train):
        series = train.get(key, {})
        out.extend(series.get(step, np.nan) for step in range(len(record.pass_at_1)))
    return out


def _column_means(curves: list[list[float]]) -> np.ndarray:
    """The mean at each position over the curves that have a value there (NaN where none does)."""
    length = max((len(c) for c in curves), default=0)
    table = np.full((max(len(curves), 1), length), np.nan)
    for i, c in enumerate(curves):
        table[i, :len(c)] = c
    counts = (~np.isnan(table)).sum(axis=0)
    sums = np.nansum(table, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- stability audit ---------------------------------------------------------------------------
AUDIT_SEED = 1_000_003   # far from every seed a chain uses


def gap_in_noise(gap: float, noise: float) -> float:
    """The gap in units of the evaluation noise's sd. With no noise at all (a policy that fails,
    or passes, every re-evaluation alike) any positive gap is infinitely many units, and a zero
    gap is zero: 0/0 is no evidence of a collapse."""
    if noise > 0:
        return gap / noise
    return float("inf") if gap > 0 else 0.0


def audit(chains: list[Chain], grader, repeats: int, log=print) -> list[dict]:
    """Per campaign: re-evaluate its peak and end checkpoints ``repeats`` times with fresh seeds,
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


# ---- the entry point ---------------------------------------------------------------------------
def run_report(config: ReportConfig, store, grader=None, log=print, attach_run_id: str | None = None) -> str:
    """Build the table (and plots, and the audit), log them on a report run; return the markdown."""
    import csv

    chains = load_chains(store, config)
    rows = table(chains, config.baseline, config.resamples, config.seed)
    text = "\n".join([f"# selfregress report ({len(chains)} chains)", "",
                      "End-of-chain pass@1 over seeds; percent points. "
                      f"Bootstrap: {config.resamples} resamples, seed {config.seed}.", "",
                      markdown_table(rows, config.baseline)])
    if not any(r.condition == config.baseline for r in rows):
        text += f"\n\nNo {config.baseline} chains were selected: no differences could be paired."
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    audit_rows = audit(chains, grader, config.audit_repeats, log) if config.audit == "true" else []
    if audit_rows:
        text += "\n\n" + audit_markdown(audit_rows)
        _write_csv(out / "audit.csv", audit_rows, csv)
    _write_csv(out / "table.csv", csv_rows(rows), csv)
    (out / "report.md").write_text(text + "\n")
    plots = plot_all(chains, out, config.resamples, config.seed)
    with store.run("report", "report", params={k: v for k, v in vars(config).items()},
                   tags={"sweep_id": config.sweep_id} if config.sweep_id else None,
                   attach_run_id=attach_run_id) as run:
        for path in [out / "report.md", out / "table.csv", *plots] + ([out / "audit.csv"] if audit_rows else []):
            run.log_artifact(path)
        run.set_tags({"chains": " ".join(c.run_id for c in chains)[:5000]})
    return text


def _write_csv(path: Path, rows: list[dict], csv) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
