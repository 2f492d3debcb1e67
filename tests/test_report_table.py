"""The report's table on hand-made campaign records: the report split's figures, pairing by seed,
the cross-fit gap, what is unpaired, a missing baseline, the sandbox column."""

import pytest

from selfregress import metric_keys as K
from selfregress.controllers import CampaignRecord
from selfregress.report import gap_in_noise
from selfregress.table import chain_figures, csv_rows, has_report_figures, markdown_table, table, table_metrics


def campaign(index, curve, start, peak, end):
    """A finished campaign: its selection curve and its report-split start, peak and end."""
    metrics = {K.REPORT_PASS_AT_1["start"]: start, K.REPORT_PASS_AT_1["peak"]: peak,
               K.REPORT_PASS_AT_1["end"]: end, K.REPORT_PEAK_STEP: float(curve.index(max(curve)))}
    return CampaignRecord(index=index, run_id=f"r{index}", start_model="base", pass_at_1=curve,
                          successes=[0] * len(curve), trials=[24] * len(curve),
                          checkpoints={s: f"m{index}{s}" for s in range(len(curve))}, metrics=metrics)


def chain(condition, seed, end, start=0.10, sandbox=None):
    """Two campaigns of 2 steps: report gaps 0.20 - 0.10 and 0.15 - end; selected gaps 0.1 and 0.0."""
    records = [campaign(0, [0.1, 0.3, 0.2], start, 0.20, 0.10), campaign(1, [0.2, 0.1, 0.25], 0.10, 0.15, end)]
    return chain_figures(condition, seed, records, batch_size=16, group_size=4, sandbox_errors=sandbox)


def test_the_figures_of_one_chain():
    c = chain("es", 0, end=0.05)
    assert (c.end, c.start) == (0.05, 0.10)
    assert c.crossfit_gap == pytest.approx(((0.20 - 0.10) + (0.15 - 0.05)) / 2)
    assert c.selected_gap == pytest.approx((0.1 + 0.0) / 2) and c.selection_end == 0.25
    assert (c.rl_samples, c.gradient_steps) == (2 * 2 * 16 * 4, 4)


def test_pairs_are_matched_by_seed_and_the_unpaired_are_named():
    chains = [chain("naive", 0, 0.10), chain("naive", 1, 0.00),
              chain("es", 0, 0.15), chain("es", 1, 0.05), chain("es", 2, 0.30)]
    rows = {r.condition: r for r in table(chains, method="t")}
    es = rows["es"]
    assert es.seeds == [0, 1, 2] and es.unpaired == [2]
    assert es.vs_baseline.n == 2 and es.vs_baseline.mean == pytest.approx(0.05)   # seed 2 left out
    assert (es.vs_baseline.low, es.vs_baseline.high) == (pytest.approx(0.05), pytest.approx(0.05))
    assert es.improved_baseline == 2
    # vs start: 0.15 - 0.10, 0.05 - 0.10, 0.30 - 0.10 over all three seeds; 2 of 3 strictly above.
    assert es.vs_start.mean == pytest.approx(0.2 / 3) and es.improved_start == 2 and es.vs_start.n == 3
    # t-interval of (0.15, 0.05, 0.30): s = 0.125831, t_2 = 4.302653, half = 0.312580; the low end
    # (-0.1459) is clipped to 0, where pass@1 cannot go below.
    assert es.end.mean == pytest.approx(0.5 / 3)
    assert (es.end.low, es.end.high) == (0.0, pytest.approx(0.5 / 3 + 0.312580, abs=1e-6))
    text = markdown_table(list(rows.values()), "naive", "t")
    assert "- es: seeds 2 have no naive chain to pair with" in text
    assert "| es | 3 | 16.7 [0.0, 47.9] | 5.0 [5.0, 5.0] | 2/2 | 6.7 [" in text
    assert "95% Student t-interval" in text and "sandbox" not in text


def test_no_baseline_gives_dashes_not_a_crash():
    rows = table([chain("es", 0, 0.2), chain("care", 0, 0.1)], baseline="naive")
    assert all(r.vs_baseline.n == 0 and r.improved_baseline == 0 for r in rows)
    lines = markdown_table(rows, "naive").splitlines()
    # cross-fit gap (0.20 - 0.10 + 0.15 - 0.20) / 2 = 2.5 points; selected gap (0.1 + 0.0) / 2
    assert lines[4] == "| es | 1 | 20.0 | - | - | 10.0 | 1/1 | 2.5 | 256 | 4 | *5.0* |"


def test_sandbox_share_only_where_logged_and_csv_matches_metrics():
    rows = table([chain("naive", 0, 0.1, sandbox=8.0), chain("naive", 1, 0.1)])
    # seeds that logged it, over the programs they graded: 256 RL samples + 2 x 3 evaluations x 24
    assert rows[0].sandbox_share == pytest.approx(8.0 / 400)
    assert "| sandbox errors % |" in markdown_table(rows, "naive") and "| 2.00 |" in markdown_table(rows, "naive")
    [row] = csv_rows(rows)
    metrics = table_metrics(rows)
    assert metrics["table/naive/end_mean"] == row["end_mean"] == pytest.approx(0.1)
    assert metrics["table/naive/sandbox_error_share"] == pytest.approx(8.0 / 400)
    assert "table/naive/seeds" not in metrics                     # text columns stay in the CSV


def test_a_chain_without_report_figures_is_recognised():
    old = campaign(0, [0.1, 0.2], 0.1, 0.1, 0.1)
    old.metrics.clear()
    assert not has_report_figures([old]) and not has_report_figures([])
    assert has_report_figures([campaign(0, [0.1, 0.2], 0.1, 0.1, 0.1)])


def test_gap_in_noise_units():
    assert gap_in_noise(0.06, 0.02) == pytest.approx(3.0)
    assert gap_in_noise(0.0, 0.01) == 0.0
    # A collapsed policy fails every re-evaluation: no noise. A zero gap there is not a collapse
    # beyond the noise (the audit used to count 0/0 as infinitely many units); a real gap is.
    assert gap_in_noise(0.0, 0.0) == 0.0
    assert gap_in_noise(0.008, 0.0) == float("inf")
