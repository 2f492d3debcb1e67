"""ES and CARE decision rules on hand-made curves and counts, with numbers worked out by hand."""

import pytest

from selfregress.controllers import (CARE, ES, CampaignRecord, CareState, Decision, Last, es_budget,
                                     es_should_stop, forget, peak_step, prob_greater, prob_greater_closed_form)

STEPS = 20
ES_ = ES(slack=3, min_delta=0.0, patience=0)
CARE_ = CARE(gate=0.5, regress=0.8, lr_decay=0.5, forget=0.5)


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
    decision = ES_.decide([record([0.1, 0.2, 0.4, 0.3, 0.1], index=2)], STEPS)
    assert (decision.decision, decision.next_start_model, decision.next_budget, decision.peak_step) == (
        "rollforward_peak", "models:/m-2-2", 5, 2)


def test_decide_es_continues_when_the_peak_is_the_end():
    decision = ES_.decide([record([0.1, 0.2, 0.4])], STEPS)
    assert (decision.decision, decision.next_start_model) == ("continue", "models:/m-0-2")


def test_decide_last():
    decision = Last().decide([record([0.1, 0.5, 0.2])], STEPS)
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
    state, decision = CARE_.step(state, record([0.10, 0.2, 0.30]), STEPS)
    # incumbent Beta(1 + 10, 1 + 90), candidate Beta(1 + 30, 1 + 70)
    assert decision.p_transfer == pytest.approx(prob_greater_closed_form(31, 71, 11, 91), abs=1e-8)
    assert decision.p_transfer > 0.999 and decision.p_regress < 0.001
    assert (decision.decision, decision.next_start_model) == ("transfer", "models:/m-0-2")
    assert (state.alpha, state.beta, state.lr_multiplier) == (31.0, 71.0, 1.0)


def test_care_reverts_a_regressed_campaign_decays_lr_and_forgets():
    state = CareState("models:/inc", 1.0, 1.0, 1.0)
    state, decision = CARE_.step(state, record([0.30, 0.2, 0.10]), STEPS)
    # accumulated incumbent Beta(31, 71); the candidate Beta(11, 91) is far worse
    assert decision.p_regress == pytest.approx(prob_greater_closed_form(31, 71, 11, 91), abs=1e-8)
    assert (decision.decision, decision.next_start_model) == ("revert", "models:/inc")
    assert decision.lr_multiplier == 0.5
    assert (state.alpha, state.beta) == (16.0, 36.0)   # 1 + 0.5 * 30, 1 + 0.5 * 70


def test_care_lr_recovers_after_an_improving_campaign():
    state = CareState("models:/inc", 16.0, 36.0, 0.25)
    state, decision = CARE_.step(state, record([0.10, 0.35]), STEPS)
    assert decision.lr_multiplier == 0.5                # 0.25 / 0.5, capped at 1


def test_care_neutral_campaign_keeps_the_lr():
    state = CareState("models:/inc", 1.0, 1.0, 0.5)
    _, decision = CARE_.step(state, record([0.20, 0.21]), STEPS)
    assert decision.lr_multiplier == 0.5


def test_decide_care_folds_the_whole_chain():
    first = record([0.10, 0.30], index=0, start="models:/base")
    second = record([0.30, 0.05], index=1, start="models:/m-0-1")
    decision = CARE_.decide([first, second], STEPS)
    # campaign 0 transfers to m-0-1; campaign 1 regresses, so the next start reverts to m-0-1
    assert (decision.decision, decision.next_start_model, decision.lr_multiplier) == ("revert", "models:/m-0-1", 0.5)


# ---- a Decision on a run, and back ----------------------------------------------------------
@pytest.mark.parametrize("decision", [
    Decision("continue", "models:/m-0-2", 20, 1.0),
    Decision("rollforward_peak", "models:/m-2-2", 5, 1.0, peak_step=2),
    Decision("revert", "models:/inc", 20, 0.25, p_transfer=0.125, p_regress=0.875),
])
def test_decision_round_trips_through_a_run(decision, mlflow_store):
    """Written on a real run (sqlite store) and read back from it: the same Decision, optional fields absent too."""
    with mlflow_store.run("c0", "campaign") as run:
        decision.to_run(run, step=7, extra_metrics={"time/sampling": 1.5})
    logged = mlflow_store.get_run(run.run_id).data
    assert Decision.from_run(logged.tags, logged.metrics) == decision
    assert logged.metrics["time/sampling"] == 1.5
    assert [m.step for m in mlflow_store.client.get_metric_history(run.run_id, "controller/next_budget")] == [7]
