"""The paper's table, plots and stability audit, read back from MLflow.

Reads: FINISHED chain runs of the experiment (optionally one sweep's, or any MLflow filter),
their campaign runs' curves and report-split figures (``report_eval``) and, for the audit,
their peak and end checkpoints.
Writes: a report run (``selfregress.kind=report``) with ``report.md``, ``table.csv``, the plots,
the table as metrics (``table/<condition>/<column>``) and, with ``audit=true``, ``audit.csv``;
the markdown is also printed, with ``regime.py``'s rise-and-collapse signature section and its
``signature.csv``. A chain that lacks its report-split figures (run before they
existed) is evaluated here once, and the figures are logged on its runs (``fill_missing``);
with ``fill_missing=false`` it is named and left out of the table.

The table's columns are ``table.py``'s: end-of-chain pass@1 on the report split, paired
differences from the baseline and from the start, the cross-fit gap, samples and steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfregress import metric_keys as K
from selfregress.audit import audit, audit_markdown, gap_in_noise  # noqa: F401 - gap_in_noise: tests
from selfregress.conditions import CONDITIONS
from selfregress.config import option
from selfregress.records import campaign_records, chain_curve
from selfregress.regime import signature_markdown, signature_rows
from selfregress.errors import UserError
from selfregress.stats import DEFAULT_INTERVAL, INTERVALS, bootstrap_band
from selfregress.table import ChainFigures, chain_figures, csv_rows, has_report_figures, markdown_table, table, \
    table_metrics

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
    interval: str = option(DEFAULT_INTERVAL, "the table's interval over seeds", tuple(INTERVALS))
    fill_missing: str = option("true", "evaluate chains that lack report-split figures on it, once, and log "
                               "them (needs their checkpoints)", ("true", "false"))

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
    sandbox_errors: float | None = None                  # sum of grader/sandbox_errors (None: not logged)

    def figures(self) -> ChainFigures:
        return chain_figures(self.condition, self.seed, self.records, int(self.params.get("batch_size", 16)),
                             int(self.params.get("group_size", 4)), self.sandbox_errors)

    @property
    def curve(self) -> list[float]:
        points = chain_curve(self.records)
        return [points[s] for s in sorted(points)]


def load_chains(store, config: ReportConfig) -> list[Chain]:
    """The newest FINISHED chain per (condition, seed) that matches the selection."""
    frame = store.finished_chains(config.sweep_id, config.filter, frame=True)
    if frame.empty:
        where = f"sweep {config.sweep_id}" if config.sweep_id else "this experiment"
        raise UserError(f"report: no finished chain runs in {where}: run `sweep` or `main` first, "
                        "or check --experiment / --sweep_id")
    chains: dict[tuple[str, int], Chain] = {}
    for row in frame.to_dict("records"):   # newest first: the first of each (condition, seed) wins
        key = (row[f"tags.{K.CONDITION}"], int(row[f"tags.{K.SEED}"]))
        if key in chains:
            continue
        params = {k[len("params."):]: v for k, v in row.items() if k.startswith("params.") and v is not None}
        chains[key] = Chain(row["run_id"], row[f"tags.{K.CHAIN_ID}"], key[0], key[1], params,
                            end=row[f"metrics.{K.CHAIN_END}"], peak=row[f"metrics.{K.CHAIN_PEAK}"],
                            gap=row[f"metrics.{K.CHAIN_GAP}"])
    for chain in chains.values():
        chain.records = campaign_records(store, chain.chain_id)
        chain.train = [{key: store.metric_history(r.run_id, key) for key in TRAIN_SERIES} for r in chain.records]
        errors = [store.metric_history(r.run_id, K.SANDBOX_ERRORS) for r in chain.records]
        chain.sandbox_errors = sum(sum(e.values()) for e in errors) if any(errors) else None
    return sorted(chains.values(), key=lambda c: (list(CONDITIONS).index(c.condition), c.seed))


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

    # Top row: the selection split (its peak is the max of the curve: biased up). Bottom row, where
    # every chain has them: the report split at the same start and end and at the selection peak.
    pass_at = K.REPORT_PASS_AT_1
    rows = [("selection split\n(peak: the curve's max)",
             {"start": lambda r: r.pass_at_1[0], "peak": lambda r: max(r.pass_at_1), "end": lambda r: r.pass_at_1[-1]})]
    if all(has_report_figures(c.records) and all(pass_at["peak"] in r.metrics for r in c.records) for c in chains):
        rows.append(("report split\n(peak chosen on selection)",
                     {name: (lambda key: lambda r: r.metrics[key])(pass_at[name]) for name in ("start", "peak", "end")}))
    fig, axes = plt.subplots(len(rows), len(by), figsize=(4 * len(by), 3.5 * len(rows)), squeeze=False, sharey="row")
    for i, (row, (split, picks)) in enumerate(zip(axes, rows)):
        for ax, (condition, runs) in zip(row, by.items()):
            for (label, pick), style in zip(picks.items(), ("o-", "^-", "v-")):
                per_seed = [[pick(r) for r in c.records] for c in runs]
                mean, _, _ = bootstrap_band(per_seed, resamples=200, seed=seed)
                ax.plot(np.arange(mean.size), mean, style, label=label)
                for values in per_seed:
                    ax.plot(np.arange(len(values)), values, style[0], alpha=0.2, color=ax.lines[-1].get_color())
            ax.set(title=condition if i == 0 else "", xlabel="campaign")
            ax.set_xticks(range(max(len(c.records) for c in runs)))
        row[0].set_ylabel(f"pass@1 on the {split}\n(mean; dots: seeds)")
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
    grid = np.full((max(len(curves), 1), length), np.nan)
    for i, c in enumerate(curves):
        grid[i, :len(c)] = c
    counts = (~np.isnan(grid)).sum(axis=0)
    sums = np.nansum(grid, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- the entry point ---------------------------------------------------------------------------
def run_report(config: ReportConfig, store, open_grader=None, log=print, attach_run_id: str | None = None) -> str:
    """Build the table (and plots, and the audit), log them on a report run; return the markdown.

    ``open_grader``: a zero-argument callable that returns a grader, called only if one is needed
    (the audit, or chains to fill in), so that a plain report never imports torch."""
    import csv

    chains = load_chains(store, config)
    missing = [c for c in chains if not has_report_figures(c.records)]
    if missing and config.fill_missing == "true" and open_grader is not None:
        fill_in(store, missing, open_grader(), log)
        missing = [c for c in chains if not has_report_figures(c.records)]
    complete = [c for c in chains if c not in missing]
    rows = table([c.figures() for c in complete], config.baseline, config.interval)
    text = "\n".join([f"# selfregress report ({len(complete)} chains)", "",
                      markdown_table(rows, config.baseline, config.interval)])
    if missing:
        text += ("\n\nLeft out, no report-split figures (run report with --fill_missing true to evaluate "
                 "them): " + ", ".join(f"{c.condition} s{c.seed} (chain {c.chain_id})" for c in missing))
    if not any(r.condition == config.baseline for r in rows):
        text += f"\n\nNo {config.baseline} chains were selected: no differences could be paired."
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    audit_rows = audit(complete, open_grader(), config.audit_repeats, log) if config.audit == "true" else []
    signatures, signature_csv = signature_rows(complete)
    if signature_csv:
        text += "\n\n" + signature_markdown(signatures)
        _write_csv(out / "signature.csv", signature_csv, csv)
    if audit_rows:
        text += "\n\n" + audit_markdown(audit_rows)
        _write_csv(out / "audit.csv", audit_rows, csv)
    if rows:
        _write_csv(out / "table.csv", csv_rows(rows, config.interval), csv)
    (out / "report.md").write_text(text + "\n")
    plots = plot_all(chains, out, config.resamples, config.seed)
    with store.run("report", "report", params={k: v for k, v in vars(config).items()},
                   tags={K.SWEEP_ID: config.sweep_id} if config.sweep_id else None,
                   attach_run_id=attach_run_id) as run:
        files = [out / "report.md", *plots] + ([out / "table.csv"] if rows else []) + \
            ([out / "signature.csv"] if signature_csv else []) + ([out / "audit.csv"] if audit_rows else [])
        for path in files:
            run.log_artifact(path)
        run.log_metrics(table_metrics(rows), step=0)
        run.set_tags({K.REPORT_CHAINS: " ".join(c.run_id for c in complete)[:5000]})
    return text


def fill_in(store, chains: list[Chain], grader, log=print) -> None:
    """Evaluate the report-split figures these chains lack (``report_eval``), log them, read them back."""
    from selfregress.chain_config import logged_config
    from selfregress.report_eval import fill_missing
    from selfregress.tracking import Run

    for chain in chains:
        config = logged_config(chain.params)
        if not config.report_tasks:
            log(f"report: {chain.condition} s{chain.seed} ran with report_tasks=0: no report split to evaluate")
            continue
        log(f"report: evaluating {chain.condition} s{chain.seed} (chain {chain.chain_id}) on the report split")
        chain.records = fill_missing(store, chain.chain_id, config, grader)
        if has_report_figures(chain.records):
            Run(store, chain.run_id).log_metrics(
                {K.CHAIN_REPORT_END: chain.records[-1].metrics[K.REPORT_PASS_AT_1["end"]]},
                step=sum(len(r.pass_at_1) for r in chain.records) - 1)


def _write_csv(path: Path, rows: list[dict], csv) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
