"""The report's statistics against cases worked out by hand."""

import itertools

import numpy as np
import pytest

from selfregress.stats import bootstrap_band, bootstrap_ci, paired_bootstrap_ci, slope


def test_constant_values_give_a_degenerate_interval():
    ci = bootstrap_ci([0.2, 0.2, 0.2])
    assert (ci.mean, ci.low, ci.high, ci.n) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2), 3)


def test_two_values_zero_and_one():
    # Resampled means of {0, 1} are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles are 0 and 1, and the mean is 0.5.
    ci = bootstrap_ci([0.0, 1.0])
    assert (ci.mean, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_quantiles_match_exact_enumeration():
    # The 4^4 = 256 equally likely resamples of (0, 0.3, 0.6, 0.9) have means in steps of 0.075:
    # P(0) = 1/256, P(0.075) = 4/256, P(0.15) = (6 + 4)/256, so the CDF passes 2.5% at 0.15
    # (1.95% -> 5.9%); by symmetry the 97.5% point is 0.75.
    x = [0.0, 0.3, 0.6, 0.9]
    exact = np.array(sorted(np.mean(c) for c in itertools.product(x, repeat=4)))
    cdf_at = {round(v, 3): np.mean(exact <= v + 1e-12) for v in (0.075, 0.15)}
    assert cdf_at == {0.075: pytest.approx(5 / 256), 0.15: pytest.approx(15 / 256)}
    ci = bootstrap_ci(x, resamples=200_000)
    assert ci.low == pytest.approx(0.15) and ci.high == pytest.approx(0.75)


def test_seeded_and_reproducible():
    values = np.random.default_rng(0).random(30).tolist()  # continuous: quantiles move with the seed
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_paired_resamples_pairs_together():
    # b = a + 0.1 exactly: every paired difference is -0.1, so the CI is a point, whereas an
    # unpaired comparison of these spreads would straddle 0.
    a = [0.1, 0.4, 0.2, 0.3, 0.05]
    b = [v + 0.1 for v in a]
    ci = paired_bootstrap_ci(a, b)
    assert (ci.mean, ci.low, ci.high) == (pytest.approx(-0.1), pytest.approx(-0.1), pytest.approx(-0.1))
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_ci([0.1], [0.1, 0.2])


def test_empty_input_has_n_zero_and_prints_a_dash():
    ci = bootstrap_ci([])
    assert ci.n == 0 and ci.text() == "-"
    assert bootstrap_ci([0.222, 0.141, 0.28]).text().startswith("21.4 [")


def test_band_over_ragged_curves():
    mean, low, high = bootstrap_band([[0.0, 1.0, 0.5], [0.0, 0.0]])
    assert mean.tolist() == [0.0, 0.5, 0.5]
    assert (low[1], high[1]) == (0.0, 1.0)   # two values {1, 0}: as in the two-value case
    assert (low[2], high[2]) == (0.5, 0.5)   # one curve reaches step 2


def test_slope_by_hand():
    assert slope([1.0, 3.0, 5.0]) == pytest.approx(2.0)
    assert slope([0.2]) == 0.0
    assert slope([0.5, 0.1, 0.5, 0.1]) == pytest.approx(-0.08)   # sum (x-1.5)(y-0.3) / 5 = -0.4/5
