"""Where the next campaign starts: pure decision rules over what MLflow holds.

A controller is a function ``(records, config) -> Decision``, where ``records`` are the chain's
finished campaigns in order (``CampaignRecord``, rebuilt from MLflow by ``chain.campaign_records``).
Nothing here touches MLflow or keeps state between calls: a test can recompute every logged
decision from the store alone.

- ``last``: the next campaign starts from the last step (naive, kl, ewc, grpo).
- ``es``: within-campaign early stop; the next campaign starts from the peak checkpoint with
  budget ``min(steps, max(1, peak_step + es_slack))``.
- ``care``: between-campaign memory; a Beta posterior on the incumbent, a transfer gate, and
  regression-aware learning-rate decay and forgetting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from scipy import integrate, special, stats


@dataclass(frozen=True)
class CampaignRecord:
    """One finished campaign, as read back from MLflow."""
    index: int
    run_id: str
    start_model: str                 # models:/... URI (or path) the campaign started from
    pass_at_1: list[float]           # (budget + 1,) step 0 = the start checkpoint
    successes: list[int]             # (budget + 1,) eval/successes per step
    trials: list[int]                # (budget + 1,) eval/trials per step
    checkpoints: dict[int, str]      # step -> LoggedModel id
    lr_multiplier: float = 1.0       # the multiplier this campaign ran with
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)   # latest value of each run metric

    @property
    def last_step(self) -> int:
        return len(self.pass_at_1) - 1


@dataclass(frozen=True)
class Decision:
    """What comes after a campaign. Logged on that campaign's run as controller/* tags and metrics."""
    decision: str                    # continue | rollforward_peak | transfer | revert
    next_start_model: str            # models:/<id>
    next_budget: int
    lr_multiplier: float
    peak_step: int | None = None
    p_transfer: float | None = None
    p_regress: float | None = None

    def tags(self) -> dict[str, str]:
        return {"controller/decision": self.decision,
                "controller/next_start_model": self.next_start_model}

    def metrics(self) -> dict[str, float]:
        out = {"controller/next_budget": float(self.next_budget),
               "controller/lr_multiplier": self.lr_multiplier}
        for key, value in (("controller/peak_step", self.peak_step),
                           ("controller/p_transfer", self.p_transfer),
                           ("controller/p_regress", self.p_regress)):
            if value is not None:
                out[key] = float(value)
        return out


def checkpoint_uri(record: CampaignRecord, step: int) -> str:
    if step not in record.checkpoints:
        raise ValueError(f"campaign {record.index} has no checkpoint at step {step} "
                         f"(it has {sorted(record.checkpoints)}): was it run with checkpoints=none?")
    return f"models:/{record.checkpoints[step]}"


# ---- last step ----------------------------------------------------------------------------
def decide_last(records: Sequence[CampaignRecord], config) -> Decision:
    last = records[-1]
    return Decision("continue", checkpoint_uri(last, last.last_step), config.steps, 1.0)


# ---- ES -----------------------------------------------------------------------------------
def peak_step(curve: Sequence[float], min_delta: float = 0.0) -> int:
    """The step of the peak: a new peak must beat the old one by more than min_delta.

    Ties (and improvements of at most min_delta) keep the earlier peak. Step 0 counts.
    """
    best, best_step = curve[0], 0
    for step, value in enumerate(curve[1:], start=1):
        if value > best + min_delta:
            best, best_step = value, step
    return best_step


def es_should_stop(curve: Sequence[float], patience: int, min_delta: float = 0.0) -> bool:
    """Stop early once ``patience`` steps pass without a new peak (patience 0: never)."""
    return patience > 0 and (len(curve) - 1) - peak_step(curve, min_delta) >= patience


def es_budget(peak: int, steps: int, slack: int) -> int:
    """The next campaign's budget: min(steps, max(1, peak_step + slack))."""
    return min(steps, max(1, peak + slack))


def decide_es(records: Sequence[CampaignRecord], config) -> Decision:
    last = records[-1]
    peak = peak_step(last.pass_at_1, config.es_min_delta)
    kind = "continue" if peak == last.last_step else "rollforward_peak"
    return Decision(kind, checkpoint_uri(last, peak), es_budget(peak, config.steps, config.es_slack),
                    1.0, peak_step=peak)


# ---- CARE ---------------------------------------------------------------------------------
def prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X > Y) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2).

    = integral_0^1 f_X(x) F_Y(x) dx, by adaptive quadrature (the parameters need not be
    integers: CARE's forgetting scales them). Checked against Evan Miller's closed form.
    """
    value, _ = integrate.quad(lambda x: stats.beta.pdf(x, a1, b1) * special.betainc(a2, b2, x),
                              0.0, 1.0, epsabs=1e-11, epsrel=1e-10, limit=200)
    return min(1.0, max(0.0, value))


def prob_greater_closed_form(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X > Y) for integer a1 (Evan Miller, "Formulas for Bayesian A/B testing")."""
    total = 0.0
    for i in range(a1):
        total += math.exp(special.betaln(a2 + i, b1 + b2) - math.log(b1 + i)
                          - special.betaln(1 + i, b1) - special.betaln(a2, b2))
    return total


def forget(alpha: float, beta: float, factor: float) -> tuple[float, float]:
    """Scale a Beta posterior toward the Beta(1, 1) prior: each count keeps ``factor`` of its weight."""
    return 1.0 + factor * (alpha - 1.0), 1.0 + factor * (beta - 1.0)


@dataclass(frozen=True)
class CareState:
    incumbent: str                   # models:/... the next campaign starts from
    alpha: float                     # Beta posterior of the incumbent's pass rate
    beta: float
    lr_multiplier: float


def care_step(state: CareState, record: CampaignRecord, config) -> tuple[CareState, Decision]:
    """One campaign's CARE update, as a pure function of the state and the campaign's counts."""
    s0, n0 = record.successes[0], record.trials[0]
    s_end, n_end = record.successes[-1], record.trials[-1]
    # Evidence accumulates: the campaign re-evaluated its start, which is the incumbent.
    alpha, beta = state.alpha + s0, state.beta + (n0 - s0)
    cand_a, cand_b = 1.0 + s_end, 1.0 + (n_end - s_end)
    p_transfer = prob_greater(cand_a, cand_b, alpha, beta)
    # Regression is judged within the campaign: its end against its own start evaluation.
    p_regress = prob_greater(1.0 + s0, 1.0 + (n0 - s0), cand_a, cand_b)
    p_improve = 1.0 - p_regress
    lr = state.lr_multiplier
    if p_regress >= config.care_regress:
        lr *= config.care_lr_decay
        alpha, beta = forget(alpha, beta, config.care_forget)
    elif p_improve >= config.care_regress:
        lr = min(1.0, lr / config.care_lr_decay)
    if p_transfer >= config.care_gate:
        kind, incumbent, alpha, beta = "transfer", checkpoint_uri(record, record.last_step), cand_a, cand_b
    else:
        kind, incumbent = "revert", state.incumbent
    new = CareState(incumbent, alpha, beta, lr)
    return new, Decision(kind, incumbent, config.steps, lr, p_transfer=p_transfer, p_regress=p_regress)


def decide_care(records: Sequence[CampaignRecord], config) -> Decision:
    """Fold care_step over the whole chain: the state is rebuilt from the records every time."""
    state = CareState(records[0].start_model, 1.0, 1.0, 1.0)
    decision = None
    for record in records:
        state, decision = care_step(state, record, config)
    return decision


CONTROLLERS: dict[str, Callable[[Sequence[CampaignRecord], object], Decision]] = {
    "last": decide_last,
    "es": decide_es,
    "care": decide_care,
}
