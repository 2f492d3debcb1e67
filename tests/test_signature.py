"""signature.py's cross-fit rise and fall, against exact expectations by enumeration."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from selfregress.controllers import peak_step
from selfregress.signature import Signature, cross_fit, in_sd, study_score


def _outcomes(truth: list[Fraction], n: int):
    """Every curve of one half (Binomial(n, truth[t]) successes at each step t) with its probability."""
    per_step = [[(s, math.comb(n, s) * p ** s * (1 - p) ** (n - s)) for s in range(n + 1)] for p in truth]
    for combo in itertools.product(*per_step):
        yield [s for s, _ in combo], math.prod(q for _, q in combo)


def _expectations(truth: list[Fraction], n: int) -> tuple[Fraction, Fraction, Fraction]:
    """Exact E[cross-fit rise], E[cross-fit fall] and E[max-picked rise on one half], when both
    halves have the true pass rate ``truth[t]`` at step t and ``n`` samples each."""
    rise = fall = naive = Fraction(0)
    curves = list(_outcomes(truth, n))
    for (a, pa), (b, pb) in itertools.product(curves, curves):
        weight = pa * pb
        result = cross_fit(a, b, n, n)
        rise += weight * Fraction(result.rise).limit_denominator(10 ** 6)
        fall += weight * Fraction(result.fall).limit_denominator(10 ** 6)
        naive += weight * Fraction(a[peak_step(a)] - a[0], n)
    return rise, fall, naive


def test_cross_fit_has_no_max_bias_when_nothing_changes():
    p = Fraction(3, 10)
    rise, fall, naive = _expectations([p, p, p], n=2)
    assert rise == 0 and fall == 0
    assert naive > Fraction(1, 10)      # the max of three noisy values sits well above the start


def test_cross_fit_estimates_the_true_gain_at_the_step_it_picks():
    truth = [Fraction(2, 10), Fraction(5, 10), Fraction(3, 10)]
    n = 2
    rise, fall, _ = _expectations(truth, n)
    # By hand: the step that half A picks has the law of peak_step over A's curves; B measures
    # truth there. E[rise] = sum_k P(k) (truth_k - truth_0), E[fall] = sum_k P(k) (truth_k - truth_T).
    law = {k: Fraction(0) for k in range(len(truth))}
    for a, pa in _outcomes(truth, n):
        law[peak_step(a)] += pa
    assert sum(law.values()) == 1
    assert rise == sum(q * (truth[k] - truth[0]) for k, q in law.items())
    assert fall == sum(q * (truth[k] - truth[-1]) for k, q in law.items())


def test_one_campaign_by_hand():
    # A (even tasks) peaks at step 1, B at step 2; 10 samples per half.
    result = cross_fit([2, 6, 3, 1], [1, 3, 5, 2], 10, 10)
    # peak on A (step 1), measured on B: rise .3 - .1, fall .3 - .2; peak on B (step 2), on A: .3 - .2, .3 - .1
    assert result.rise == pytest.approx(((0.3 - 0.1) + (0.3 - 0.2)) / 2)
    assert result.fall == pytest.approx(((0.3 - 0.2) + (0.3 - 0.1)) / 2)
    p = 23 / 80
    assert result.sd == pytest.approx(math.sqrt(p * (1 - p) / 10))
    assert result.score == pytest.approx(0.15 / result.sd)


def test_a_dead_campaign_scores_zero_and_a_rise_without_a_fall_scores_low():
    assert cross_fit([0, 0, 0], [0, 0, 0], 8, 8).score == 0.0
    assert Signature(rise=0.2, fall=-0.05, sd=0.05).score == pytest.approx(-1.0)


@pytest.mark.parametrize("args, message", [
    (([1, 2], [1], 4, 4), "equally long"),
    (([], [], 4, 4), "equally long"),
    (([1], [1], 0, 4), "at least 1 trial"),
])
def test_cross_fit_refuses_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        cross_fit(*args)


def test_the_mean_of_mins_sits_below_the_min_of_means_by_the_exact_gap():
    """E[min(X, Y)] = min(E X, E Y) - (E|X - Y| - |E X - E Y|) / 2, checked by enumerating the
    cross-fit rise and fall of a drifting campaign (true rise .1, fall .1) on 2 samples a half."""
    truth = [Fraction(2, 10), Fraction(3, 10), Fraction(2, 10)]
    curves = list(_outcomes(truth, 2))
    e_rise = e_fall = e_min = e_abs = Fraction(0)
    for (a, pa), (b, pb) in itertools.product(curves, curves):
        r = cross_fit(a, b, 2, 2)
        rise, fall = (Fraction(v).limit_denominator(10 ** 6) for v in (r.rise, r.fall))
        w = pa * pb
        e_rise, e_fall, e_min, e_abs = e_rise + w * rise, e_fall + w * fall, e_min + w * min(rise, fall), \
            e_abs + w * abs(rise - fall)
    assert e_min == min(e_rise, e_fall) - (e_abs - abs(e_rise - e_fall)) / 2
    assert e_rise > 0 and e_fall > 0 and e_min < min(e_rise, e_fall)     # the mean of mins is biased down


def test_study_score_ranks_a_live_drift_above_a_dead_chain():
    dead = [cross_fit([0, 0, 0], [0, 0, 0], 8, 8)] * 3
    # Noisy live campaigns: each rises and falls a little, but in no campaign both by much.
    live = [Signature(rise=0.10, fall=-0.02, sd=0.05), Signature(rise=-0.01, fall=0.08, sd=0.05),
            Signature(rise=0.03, fall=0.02, sd=0.05)]
    assert study_score([dead]) == (0.0, 0.0, 0.0)
    assert sum(s.score for s in live) / 3 < 0                       # the old objective: below dead
    score, rise, fall = study_score([live])
    assert (rise, fall) == (pytest.approx(0.12 / 3 / 0.05), pytest.approx(0.08 / 3 / 0.05))
    assert score == pytest.approx(fall) and score > 0               # the new one: above dead
    assert in_sd(dead[0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no campaign"):
        study_score([])
