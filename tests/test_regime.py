"""regime.py: the rise-and-collapse criteria on hand-made campaigns, against figures worked by hand."""

from __future__ import annotations

import math

import pytest

from selfregress import metric_keys as K
from selfregress.controllers import CampaignRecord
from selfregress.regime import CampaignSignature, campaign_signature, condition_signature


def record(index: int, report: tuple, rlset: tuple | None = (0.5, 0.5, 0.5), trials: int = 400) -> CampaignRecord:
    metrics = {}
    for point, value in zip(K.REPORT_POINTS, report):
        metrics[K.REPORT_PASS_AT_1[point]], metrics[K.REPORT_TRIALS[point]] = value, trials
    if rlset is not None:
        for point, value in zip(K.REPORT_POINTS, rlset):
            metrics[K.RLSET_PASS_AT_1[point]], metrics[K.RLSET_TRIALS[point]] = value, trials
    return CampaignRecord(index=index, run_id=f"r{index}", start_model="m", pass_at_1=[0.1], successes=[1],
                          trials=[10], checkpoints={}, metrics=metrics)


def test_rise_and_fall_in_binomial_sd_of_one_report_evaluation():
    c = campaign_signature("naive", 0, record(0, (0.1, 0.2, 0.12)))
    sd = math.sqrt(0.14 * 0.86 / 400)
    assert c.sd == pytest.approx(sd)
    assert (c.rise_sd, c.fall_sd) == (pytest.approx(0.1 / sd), pytest.approx(0.08 / sd))
    assert c.collapsed and c.mechanism == "over-optimisation"


@pytest.mark.parametrize("rlset, entropy, mechanism", [
    ((0.3, 0.5, 0.6), {1: 0.2, 20: 0.15}, "over-optimisation"),             # the RL set keeps rising
    ((0.3, 0.5, 0.49), {1: 0.2, 20: 0.15}, "over-optimisation"),            # holds: within its 1 sd (0.025)
    ((0.3, 0.5, 0.4), {1: 0.2, 20: 0.6}, "degeneration"),                   # loses its own tasks, entropy up
    ((0.3, 0.5, 0.7), {1: 0.2, 20: 0.05}, "over-optimisation + entropy collapse"),
    (None, {}, "unknown"),
])
def test_mechanism_of_a_collapsed_campaign(rlset, entropy, mechanism):
    c = campaign_signature("naive", 0, record(0, (0.1, 0.2, 0.1), rlset), entropy)
    assert c.mechanism == mechanism


def test_no_mechanism_without_a_collapse_and_none_without_a_peak():
    assert campaign_signature("naive", 0, record(0, (0.1, 0.2, 0.19))).mechanism == ""
    bare = record(0, (0.1, 0.2, 0.1))
    del bare.metrics[K.REPORT_PASS_AT_1["peak"]]
    assert campaign_signature("naive", 0, bare) is None


def campaign(campaign_index: int, start: float, peak: float, end: float, sd: float = 0.01) -> CampaignSignature:
    return CampaignSignature("naive", 0, campaign_index, start, peak, end, sd, None, None, None, None, None)


def test_condition_counts_seeds_means_and_recurrence():
    # Seed A rises 5 sd and falls 6; seed B rises 2 and falls 5: 1/2 seeds rise >= 3, 2/2 fall.
    # Mean rise (0.05 + 0.02) / 2 / 0.01 = 3.5; mean fall (0.06 + 0.05) / 2 / 0.01 = 5.5.
    # Campaign 1: means rise 4, fall 4 -> recurs; campaign 2: rises only -> does not.
    seed_a = [campaign(0, 0.10, 0.15, 0.09), campaign(1, 0.10, 0.14, 0.10), campaign(2, 0.1, 0.15, 0.15)]
    seed_b = [campaign(0, 0.10, 0.12, 0.07), campaign(1, 0.10, 0.14, 0.10), campaign(2, 0.1, 0.15, 0.15)]
    row = condition_signature("naive", [seed_a, seed_b])
    assert row.rises == pytest.approx([5.0, 2.0]) and row.falls == pytest.approx([6.0, 5.0])
    assert row.mean_rise == pytest.approx(3.5) and row.mean_fall == pytest.approx(5.5)
    assert (row.recurrence, row.campaigns) == (2, 3)
    assert (row.collapsed, row.total) == (4, 6) and row.mechanisms == {"unknown": 4}
