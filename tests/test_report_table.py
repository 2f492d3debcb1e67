"""The report's table on hand-made chains: pairing by seed, what is unpaired, a missing baseline."""

import pytest

from selfregress.report import Chain, gap_in_noise, markdown_table, table


def chain(condition, seed, end, peak=0.3, gap=0.05):
    return Chain(run_id=f"{condition}{seed}", chain_id=f"c{condition}{seed}", condition=condition, seed=seed,
                 params={}, end=end, peak=peak, gap=gap)


def test_pairs_are_matched_by_seed_and_the_unpaired_are_named():
    chains = [chain("naive", 0, 0.10), chain("naive", 1, 0.00),
              chain("es", 0, 0.15), chain("es", 1, 0.05), chain("es", 2, 0.30)]
    rows = {r.condition: r for r in table(chains, resamples=1000)}
    es = rows["es"]
    assert es.seeds == [0, 1, 2] and es.unpaired == [2]
    assert es.diff.n == 2 and es.diff.mean == pytest.approx(0.05)     # (0.05 + 0.05) / 2, seed 2 left out
    assert (es.diff.low, es.diff.high) == (pytest.approx(0.05), pytest.approx(0.05))
    assert es.improved == 2
    assert es.end.mean == pytest.approx(0.5 / 3)                        # every es seed counts here
    text = markdown_table(list(rows.values()), "naive")
    assert "- es: seeds 2 have no naive chain to pair with" in text
    assert "| es | 3 | 16.7 [" in text and "| 2/2 |" in text


def test_no_baseline_gives_dashes_not_a_crash():
    rows = table([chain("es", 0, 0.2), chain("care", 0, 0.1)], baseline="naive", resamples=1000)
    assert all(r.diff.n == 0 and r.improved == 0 for r in rows)
    lines = markdown_table(rows, "naive").splitlines()
    assert lines[2].startswith("| es | 1 | 20.0 [20.0, 20.0] | - | - |")


def test_gap_in_noise_units():
    assert gap_in_noise(0.06, 0.02) == pytest.approx(3.0)
    assert gap_in_noise(0.0, 0.01) == 0.0
    # A collapsed policy fails every re-evaluation: no noise. A zero gap there is not a collapse
    # beyond the noise (the audit used to count 0/0 as infinitely many units); a real gap is.
    assert gap_in_noise(0.0, 0.0) == 0.0
    assert gap_in_noise(0.008, 0.0) == float("inf")
