"""The report's table: end-of-chain pass@1 on the report split, with intervals that hold at n = 5.

Every figure in the main columns is measured on the report split (``records.report_split``),
which no decision reads: ES's peaks, CARE's gate, the Optuna objective and the SFT stop all use
the selection (eval) split. Per chain (``ChainFigures``, from its campaign records):

- ``end``: the last campaign's ``report/pass_at_1_end``;
- ``start``: campaign 0's ``report/pass_at_1_start``: the base model, sampled with this seed;
- ``crossfit_gap``: the mean over campaigns of report(peak) - report(end), where the peak is
  the step of the highest *selection* pass@1. Choosing on one split and measuring on another
  removes the max-of-noisy-evaluations bias: under no change its expectation is 0;
- ``selected_gap``: the old ``chain/mean_peak_to_end_gap``, max(selection curve) - its end, both
  on the selection split. Under no change max(x_0..x_20) - x_20 averages about 1.9 sd, and the
  bias grows with the number of evaluations, so it is kept only as a labelled secondary column;
- ``rl_samples`` = sum over campaigns of steps x batch_size x group_size, ``gradient_steps`` =
  sum of steps (ES trains on fewer of both);
- ``sandbox_errors``: the sum of ``grader/sandbox_errors`` over the steps, None where no step
  logged it (runs older than that metric).

Per condition (``Row``): the mean end with its interval over seeds; the differences from the
baseline condition and from the start, each paired by seed, with k/n seeds improved (strictly);
the mean cross-fit gap with its interval; the selected gap; the mean samples and steps; the
share of sandbox errors among the programs graded in training and selection evaluation. Intervals come from ``stats.mean_interval`` /
``stats.paired_interval`` (default ``hall_t``), clipped to where the mean can lie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfregress import metric_keys as K
from selfregress.controllers import CampaignRecord
from selfregress.stats import DEFAULT_INTERVAL, Interval, caption, mean_interval, paired_interval


@dataclass(frozen=True)
class ChainFigures:
    condition: str
    seed: int
    end: float                  # report split, the chain's last checkpoint
    start: float                # report split, campaign 0's start (the base)
    crossfit_gap: float         # mean over campaigns: report(selection peak) - report(end)
    selected_gap: float         # mean over campaigns: max(selection curve) - selection end (biased up)
    selection_end: float        # the old table's end: the selection split's last point
    rl_samples: int
    gradient_steps: int
    sandbox_errors: float | None
    graded_programs: int = 0    # programs graded in training and selection evaluation (the share's base)


def has_report_figures(records: list[CampaignRecord]) -> bool:
    """Whether every campaign logged its report-split start and end (``report_eval``)."""
    return bool(records) and all(K.REPORT_PASS_AT_1["end"] in r.metrics and K.REPORT_PASS_AT_1["start"] in r.metrics
                                 for r in records)


def chain_figures(condition: str, seed: int, records: list[CampaignRecord], batch_size: int, group_size: int,
                  sandbox_errors: float | None = None) -> ChainFigures:
    """One chain's figures from its campaign records (which must have their report figures).

    A campaign whose peak had no checkpoint (``checkpoints=none``) has no report(peak) and is
    left out of the cross-fit mean (NaN if every campaign is)."""
    pass_at = K.REPORT_PASS_AT_1
    gaps = [r.metrics[pass_at["peak"]] - r.metrics[pass_at["end"]] for r in records if pass_at["peak"] in r.metrics]
    steps = sum(r.last_step for r in records)
    return ChainFigures(
        condition, seed, end=records[-1].metrics[pass_at["end"]], start=records[0].metrics[pass_at["start"]],
        crossfit_gap=float(np.mean(gaps)) if gaps else float("nan"),
        selected_gap=float(np.mean([max(r.pass_at_1) - r.pass_at_1[-1] for r in records])),
        selection_end=records[-1].pass_at_1[-1], rl_samples=steps * batch_size * group_size,
        gradient_steps=steps, sandbox_errors=sandbox_errors,
        # grader/sandbox_errors counts training and selection-evaluation verdicts of each step
        graded_programs=steps * batch_size * group_size + int(sum(sum(r.trials) for r in records)))


@dataclass(frozen=True)
class Row:
    condition: str
    seeds: list[int]
    end: Interval
    vs_baseline: Interval       # paired by seed; n = pairs (0: no baseline chain to pair with)
    improved_baseline: int      # pairs where this condition's end > the baseline's
    vs_start: Interval          # end - own start, paired by seed
    improved_start: int
    crossfit_gap: Interval
    selected_gap: float
    selection_end: float
    rl_samples: float
    gradient_steps: float
    sandbox_share: float | None  # sandbox_error verdicts / programs graded (None: not logged)
    unpaired: list[int]          # seeds that the baseline lacks


def table(chains: list[ChainFigures], baseline: str = "naive", method: str = DEFAULT_INTERVAL) -> list[Row]:
    """One row per condition, in the order the chains come."""
    by: dict[str, dict[int, ChainFigures]] = {}
    for c in chains:
        by.setdefault(c.condition, {})[c.seed] = c
    base = by.get(baseline, {})
    rows = []
    for condition, runs in by.items():
        seeds = sorted(runs)
        paired = [s for s in seeds if s in base] if condition != baseline else []
        gaps = [runs[s].crossfit_gap for s in seeds if np.isfinite(runs[s].crossfit_gap)]
        logged = [runs[s] for s in seeds if runs[s].sandbox_errors is not None]
        rows.append(Row(
            condition, seeds,
            end=mean_interval([runs[s].end for s in seeds], method=method, bounds=(0.0, 1.0)),
            vs_baseline=paired_interval([runs[s].end for s in paired], [base[s].end for s in paired],
                                        method=method, bounds=(-1.0, 1.0)),
            improved_baseline=sum(runs[s].end > base[s].end for s in paired),
            vs_start=paired_interval([runs[s].end for s in seeds], [runs[s].start for s in seeds],
                                     method=method, bounds=(-1.0, 1.0)),
            improved_start=sum(runs[s].end > runs[s].start for s in seeds),
            crossfit_gap=mean_interval(gaps, method=method, bounds=(-1.0, 1.0)),
            selected_gap=float(np.mean([runs[s].selected_gap for s in seeds])),
            selection_end=float(np.mean([runs[s].selection_end for s in seeds])),
            rl_samples=float(np.mean([runs[s].rl_samples for s in seeds])),
            gradient_steps=float(np.mean([runs[s].gradient_steps for s in seeds])),
            sandbox_share=(sum(c.sandbox_errors for c in logged) / max(sum(c.graded_programs for c in logged), 1)
                           if logged else None),
            unpaired=[s for s in seeds if s not in base] if condition != baseline else []))
    return rows


def markdown_table(rows: list[Row], baseline: str, method: str = DEFAULT_INTERVAL) -> str:
    sandbox = any(r.sandbox_share is not None for r in rows)
    header = (f"| condition | seeds | end pass@1 % | vs {baseline}, points | improved | vs start, points | improved "
              "| cross-fit gap, points | RL samples | gradient steps " + ("| sandbox errors % " if sandbox else "")
              + "| *selected gap, points* |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        is_base = r.condition == baseline or r.vs_baseline.n == 0
        share = ("| - " if r.sandbox_share is None else f"| {r.sandbox_share * 100:.2f} ") if sandbox else ""
        lines.append(
            f"| {r.condition} | {len(r.seeds)} | {r.end.text()} | {'-' if is_base else r.vs_baseline.text()} "
            f"| {'-' if is_base else f'{r.improved_baseline}/{r.vs_baseline.n}'} | {r.vs_start.text()} "
            f"| {r.improved_start}/{r.vs_start.n} | {r.crossfit_gap.text()} | {r.rl_samples:.0f} "
            f"| {r.gradient_steps:.0f} {share}| *{r.selected_gap * 100:.1f}* |")
    notes = [f"- {r.condition}: seeds {', '.join(map(str, r.unpaired))} have no {baseline} chain to pair with"
             for r in rows if r.unpaired]
    return "\n".join([table_caption(method, baseline), ""] + lines + ([""] + notes if notes else []))


def table_caption(method: str, baseline: str) -> str:
    return (f"End-of-chain pass@1 on the report split (disjoint from the selection split every decision "
            f"reads), mean over seeds, in percent or percentage points, with the {caption(method)} over "
            f"seeds; differences from {baseline} and from each seed's own campaign-0 start are paired by "
            "seed, and 'improved' counts seeds strictly above. Cross-fit gap: each campaign's peak chosen "
            "on the selection split, measured on the report split, minus its end on the report split; "
            "mean over campaigns, then over seeds. *Selected gap* (secondary, biased up): the logged "
            "max-minus-end of the selection curve.")


CSV_COLUMNS = ("condition", "n_seeds", "seeds", "end_mean", "end_low", "end_high", "vs_baseline_mean",
               "vs_baseline_low", "vs_baseline_high", "n_pairs", "improved_baseline", "vs_start_mean",
               "vs_start_low", "vs_start_high", "improved_start", "crossfit_gap_mean", "crossfit_gap_low",
               "crossfit_gap_high", "rl_samples", "gradient_steps", "sandbox_error_share",
               "selected_gap_mean", "selection_end_mean", "interval", "unpaired")


def csv_rows(rows: list[Row], method: str = DEFAULT_INTERVAL) -> list[dict]:
    return [dict(zip(CSV_COLUMNS, (
        r.condition, len(r.seeds), " ".join(map(str, r.seeds)), r.end.mean, r.end.low, r.end.high,
        r.vs_baseline.mean, r.vs_baseline.low, r.vs_baseline.high, r.vs_baseline.n, r.improved_baseline,
        r.vs_start.mean, r.vs_start.low, r.vs_start.high, r.improved_start, r.crossfit_gap.mean,
        r.crossfit_gap.low, r.crossfit_gap.high, r.rl_samples, r.gradient_steps,
        "" if r.sandbox_share is None else r.sandbox_share, r.selected_gap, r.selection_end, method,
        " ".join(map(str, r.unpaired))))) for r in rows]


def table_metrics(rows: list[Row]) -> dict[str, float]:
    """The table as the report run's metrics: ``table/<condition>/<column>`` (numbers only, NaN left out)."""
    out = {}
    for row in csv_rows(rows):
        for column, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                out[f"{K.TABLE_PREFIX}{row['condition']}/{column}"] = float(value)
    return out
