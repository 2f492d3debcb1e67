"""Issue #16's rise-and-collapse signature, on the report split: does a condition show it, and how?

Per campaign, from what ``report_eval`` logged (no decision reads any of it): the report-split
pass@1 of its start, of its peak (the step of the highest *selection* pass@1: cross-fit, so no
max bias) and of its end, and the same three points on the RL task set (``rlset/*``).

**Noise unit.** sd = sqrt(p (1 - p) / trials), the binomial sd of one report evaluation at the
campaign's mean report pass@1 p over its three points. It is an upper bound on the sampling
noise of a re-evaluation (tasks that are always or never solved make the real one smaller), so
"3 sd" here is a conservative threshold. rise = (peak - start) / sd, fall = (peak - end) / sd.

**The criteria** (each over the seeds of one condition):
- rise: campaign 0's rise >= 3 on at least 4 of 5 seeds (k of n, shown as such), and in the mean:
  mean(peak - start) / mean(sd) >= 3. The mean's threshold uses one evaluation's sd, not the
  sd of a mean of n: stricter, on purpose;
- collapse: the same for the fall;
- recurrence: the number of campaigns among the first five in which the seed mean both rises and
  falls by at least 3 (mean) sd;
- mechanism, per campaign that collapsed (fall >= 3 sd): *over-optimisation* when the RL-set pass
  rate at the end is no more than one of its own sd below its value at the peak (it holds or
  rises while held-out falls), else *degeneration* (the policy loses its own tasks too); and
  *entropy collapse* beside either when ``train/entropy`` at the campaign's last step is below
  half its value at step 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from selfregress import metric_keys as K
from selfregress.controllers import CampaignRecord

THRESHOLD_SD = 3.0
ENTROPY_COLLAPSE = 0.5      # end / step-1 entropy below this: the policy's entropy collapsed


def binomial_sd(p: float, trials: float) -> float:
    return math.sqrt(p * (1 - p) / trials) if trials > 0 else float("nan")


@dataclass(frozen=True)
class CampaignSignature:
    condition: str
    seed: int
    campaign: int
    start: float
    peak: float
    end: float
    sd: float
    rl_peak: float | None
    rl_end: float | None
    rl_sd: float | None
    entropy_first: float | None
    entropy_last: float | None

    @property
    def rise_sd(self) -> float:
        return (self.peak - self.start) / self.sd if self.sd > 0 else 0.0

    @property
    def fall_sd(self) -> float:
        return (self.peak - self.end) / self.sd if self.sd > 0 else 0.0

    @property
    def collapsed(self) -> bool:
        return self.fall_sd >= THRESHOLD_SD

    @property
    def mechanism(self) -> str:
        """over-optimisation | degeneration (+ entropy collapse), '' when it did not collapse,
        'unknown' without RL-set figures."""
        if not self.collapsed:
            return ""
        if self.rl_peak is None or self.rl_end is None or not self.rl_sd:
            kind = "unknown"
        else:
            kind = "over-optimisation" if self.rl_end >= self.rl_peak - self.rl_sd else "degeneration"
        if self.entropy_first and self.entropy_last is not None and \
                self.entropy_last < ENTROPY_COLLAPSE * self.entropy_first:
            kind += " + entropy collapse"
        return kind


def campaign_signature(condition: str, seed: int, record: CampaignRecord,
                       entropy: dict[int, float] | None = None) -> CampaignSignature | None:
    """The campaign's signature, or None when it lacks a report-split peak (``checkpoints=none``)."""
    m = record.metrics
    if not all(K.REPORT_PASS_AT_1[p] in m for p in K.REPORT_POINTS):
        return None
    start, peak, end = (m[K.REPORT_PASS_AT_1[p]] for p in K.REPORT_POINTS)
    trials = np.mean([m[K.REPORT_TRIALS[p]] for p in K.REPORT_POINTS])
    rl = [m.get(K.RLSET_PASS_AT_1[p]) for p in ("peak", "end")]
    rl_trials = [m.get(K.RLSET_TRIALS[p]) for p in ("peak", "end")]
    rl_sd = binomial_sd(float(np.mean(rl)), float(np.mean(rl_trials))) if None not in rl + rl_trials else None
    steps = sorted(entropy or {})
    return CampaignSignature(
        condition, seed, record.index, start, peak, end, binomial_sd(float(np.mean([start, peak, end])), trials),
        rl[0], rl[1], rl_sd,
        entropy[steps[0]] if steps else None, entropy[steps[-1]] if steps else None)


@dataclass(frozen=True)
class ConditionSignature:
    condition: str
    seeds: int
    rises: list[float]          # campaign 0, per seed, in sd
    falls: list[float]
    mean_rise: float            # mean(peak - start) / mean(sd), campaign 0
    mean_fall: float
    recurrence: int             # campaigns among the first five where the seed mean rose and fell >= 3 sd
    campaigns: int              # how many of the first five every seed has
    mechanisms: dict[str, int]  # over collapsed campaigns (all seeds, all campaigns)
    collapsed: int              # campaigns that collapsed
    total: int                  # campaigns with figures


def condition_signature(condition: str, per_seed: list[list[CampaignSignature]]) -> ConditionSignature:
    """Fold one condition's campaigns (a list per seed, in campaign order) into the criteria."""
    first = [c[0] for c in per_seed if c and c[0].campaign == 0]
    common = min(min((len(c) for c in per_seed), default=0), 5)

    def mean_sd(campaigns: list[CampaignSignature], field: str) -> float:
        sd = np.mean([c.sd for c in campaigns])
        gap = np.mean([(c.peak - c.start) if field == "rise" else (c.peak - c.end) for c in campaigns])
        return float(gap / sd) if sd > 0 else 0.0

    recurrence = sum(mean_sd([c[i] for c in per_seed], "rise") >= THRESHOLD_SD and
                     mean_sd([c[i] for c in per_seed], "fall") >= THRESHOLD_SD for i in range(common))
    every = [c for seed in per_seed for c in seed]
    mechanisms: dict[str, int] = {}
    for c in every:
        if c.mechanism:
            mechanisms[c.mechanism] = mechanisms.get(c.mechanism, 0) + 1
    return ConditionSignature(
        condition, len(first), [c.rise_sd for c in first], [c.fall_sd for c in first],
        mean_sd(first, "rise") if first else 0.0, mean_sd(first, "fall") if first else 0.0,
        recurrence, common, mechanisms, sum(c.collapsed for c in every), len(every))


def signature_markdown(rows: list[ConditionSignature]) -> str:
    """The report's section: one line per condition."""
    def per_seed(values: list[float]) -> str:
        hits = sum(v >= THRESHOLD_SD for v in values)
        return f"{' '.join(f'{v:+.1f}' for v in values)} ({hits}/{len(values)} ≥ 3)"

    lines = ["## The rise-and-collapse signature (report split, in sd of one report evaluation)", "",
             "Campaign 0: rise = report(peak) − report(start), fall = report(peak) − report(end), the peak "
             "chosen on the selection split; per seed, then the mean. Recurrence: campaigns among the "
             "first five whose seed mean both rises and falls by ≥ 3 sd. Mechanism of each campaign that "
             "fell ≥ 3 sd: over-optimisation (the RL-set pass rate holds or rises, within 1 sd), "
             "degeneration (it falls too); entropy collapse: `train/entropy` ends below half its step-1 value.",
             "", "| condition | seeds | rise per seed | mean rise | fall per seed | mean fall | recurrence | "
             "collapsed campaigns | mechanisms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mechanisms = ", ".join(f"{k} {v}" for k, v in sorted(r.mechanisms.items())) or "—"
        lines.append(f"| {r.condition} | {r.seeds} | {per_seed(r.rises)} | {r.mean_rise:+.1f} | {per_seed(r.falls)} | "
                     f"{r.mean_fall:+.1f} | {r.recurrence}/{r.campaigns} | {r.collapsed}/{r.total} | {mechanisms} |")
    return "\n".join(lines)


def signature_rows(chains) -> tuple[list[ConditionSignature], list[dict]]:
    """(one row per condition, one csv row per campaign) from the report's chains."""
    by: dict[str, list[list[CampaignSignature]]] = {}
    rows = []
    for chain in chains:
        campaigns = [campaign_signature(chain.condition, chain.seed, record, train.get(K.TRAIN_ENTROPY))
                     for record, train in zip(chain.records, chain.train)]
        campaigns = [c for c in campaigns if c is not None]
        by.setdefault(chain.condition, []).append(campaigns)
        rows += [{"condition": c.condition, "seed": c.seed, "campaign": c.campaign, "start": c.start,
                  "peak": c.peak, "end": c.end, "sd": c.sd, "rise_sd": c.rise_sd, "fall_sd": c.fall_sd,
                  "rl_peak": c.rl_peak, "rl_end": c.rl_end, "rl_sd": c.rl_sd, "entropy_first": c.entropy_first,
                  "entropy_last": c.entropy_last, "mechanism": c.mechanism} for c in campaigns]
    return [condition_signature(k, v) for k, v in by.items()], rows
