"""ES and CARE decision rules on hand-made curves and counts, with numbers worked out by hand."""

from types import SimpleNamespace

import pytest

from selfregress.controllers import (CampaignRecord, CareState, care_step, decide_care, decide_es,
                                     decide_last, es_budget, es_should_stop, forget, peak_step,
                                     prob_greater, prob_greater_closed_form)

CONFIG = SimpleNamespace(steps=20, es_slack=3, es_min_delta=0.0, es_patience=0, care_gate=0.5,
                         care_regress=0.8, care_lr_decay=0.5, care_forget=0.5)


def record(curve, successes=None, trials=None, index=0, start="models:/base"):
    trials = trials or [100] * len(curve)
    successes = successes or [round(p * n) for p, n in zip(curve, trials)]
    return CampaignRecord(index=index, run_id=f"r{index}", start_model=start, pass_at_1=list(curve),
                          successes=successes, trials=trials,
                          checkpoints={s: f"m-{index}-{s}" for s in range(len(curve))})


# ---- ES -------------------------------------------------------------------------------------
def test_peak_at_step_4_with_slack_3_gives_budget_7():
    curve = [0.10, 0.12, 0.15, 0.18, 0.25, 0.20, 0.11, 0.05]
    assert peak_step(curve) == 4
    assert es_budget(4, steps=20, slack=3) == 7


def test_ties_take_the_earliest_peak():
    assert peak_step([0.1, 0.3, 0.2, 0.3, 0.3]) == 1


def test_min_delta_ignores_small_improvements():
    curve = [0.20, 0.22, 0.26, 0.265]
    assert peak_step(curve, min_delta=0.0) == 3
    assert peak_step(curve, min_delta=0.03) == 2       # 0.26 > 0.20 + 0.03; 0.265 is not > 0.29


def test_budget_bounds():
    assert es_budget(0, steps=20, slack=0) == 1        # never a zero-step campaign
    assert es_budget(19, steps=20, slack=3) == 20      # never more than the campaign budget


def test_patience():
    curve = [0.1, 0.3, 0.2, 0.2]
    assert not es_should_stop(curve, patience=0)        # 0: no patience, run the budget
    assert not es_should_stop(curve, patience=3)        # 2 steps since the peak at step 1
    assert es_should_stop(curve, patience=2)


def test_decide_es_rolls_forward_to_the_peak_checkpoint():
    decision = decide_es([record([0.1, 0.2, 0.4, 0.3, 0.1], index=2)], CONFIG)
    assert (decision.decision, decision.next_start_model, decision.next_budget, decision.peak_step) == (
        "rollforward_peak", "models:/m-2-2", 5, 2)


def test_decide_es_continues_when_the_peak_is_the_end():
    decision = decide_es([record([0.1, 0.2, 0.4])], CONFIG)
    assert (decision.decision, decision.next_start_model) == ("continue", "models:/m-0-2")


def test_decide_last():
    decision = decide_last([record([0.1, 0.5, 0.2])], CONFIG)
    assert (decision.decision, decision.next_start_model, decision.next_budget) == ("continue", "models:/m-0-2", 20)


# ---- the Beta comparison ------------------------------------------------------------------
@pytest.mark.parametrize("a1, b1, a2, b2, expected", [
    (1, 1, 1, 1, 0.5),            # symmetry
    (2, 1, 1, 1, 2 / 3),          # integral of 2x * x over [0, 1]
    (1, 2, 1, 1, 1 / 3),          # integral of 2(1 - x) * x
])
def test_prob_greater_hand_values(a1, b1, a2, b2, expected):
    assert prob_greater(a1, b1, a2, b2) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("a1, b1, a2, b2", [(31, 71, 11, 91), (26, 232, 30, 228), (5, 3, 4, 4), (60, 200, 57, 203)])
def test_prob_greater_matches_the_closed_form(a1, b1, a2, b2):
    assert prob_greater(a1, b1, a2, b2) == pytest.approx(prob_greater_closed_form(a1, b1, a2, b2), abs=1e-8)


def test_forget_scales_toward_the_prior():
    assert forget(31.0, 71.0, 0.5) == (16.0, 36.0)
    assert forget(31.0, 71.0, 1.0) == (31.0, 71.0)


# ---- CARE ---------------------------------------------------------------------------------
def test_care_transfers_an_improved_candidate():
    state = CareState("models:/base", 1.0, 1.0, 1.0)
    state, decision = care_step(state, record([0.10, 0.2, 0.30]), CONFIG)
    # incumbent Beta(1 + 10, 1 + 90), candidate Beta(1 + 30, 1 + 70)
    assert decision.p_transfer == pytest.approx(prob_greater_closed_form(31, 71, 11, 91), abs=1e-8)
    assert decision.p_transfer > 0.999 and decision.p_regress < 0.001
    assert (decision.decision, decision.next_start_model) == ("transfer", "models:/m-0-2")
    assert (state.alpha, state.beta, state.lr_multiplier) == (31.0, 71.0, 1.0)


def test_care_reverts_a_regressed_campaign_decays_lr_and_forgets():
    state = CareState("models:/inc", 1.0, 1.0, 1.0)
    state, decision = care_step(state, record([0.30, 0.2, 0.10]), CONFIG)
    # accumulated incumbent Beta(31, 71); the candidate Beta(11, 91) is far worse
    assert decision.p_regress == pytest.approx(prob_greater_closed_form(31, 71, 11, 91), abs=1e-8)
    assert (decision.decision, decision.next_start_model) == ("revert", "models:/inc")
    assert decision.lr_multiplier == 0.5
    assert (state.alpha, state.beta) == (16.0, 36.0)   # 1 + 0.5 * 30, 1 + 0.5 * 70


def test_care_lr_recovers_after_an_improving_campaign():
    state = CareState("models:/inc", 16.0, 36.0, 0.25)
    state, decision = care_step(state, record([0.10, 0.35]), CONFIG)
    assert decision.lr_multiplier == 0.5                # 0.25 / 0.5, capped at 1


def test_care_neutral_campaign_keeps_the_lr():
    state = CareState("models:/inc", 1.0, 1.0, 0.5)
    _, decision = care_step(state, record([0.20, 0.21]), CONFIG)
    assert decision.lr_multiplier == 0.5


def test_decide_care_folds_the_whole_chain():
    first = record([0.10, 0.30], index=0, start="models:/base")
    second = record([0.30, 0.05], index=1, start="models:/m-0-1")
    decision = decide_care([first, second], CONFIG)
    # campaign 0 transfers to m-0-1; campaign 1 regresses, so the next start reverts to m-0-1
    assert (decision.decision, decision.next_start_model, decision.lr_multiplier) == ("revert", "models:/m-0-1", 0.5)
