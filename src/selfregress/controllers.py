"""Where the next campaign starts: small, pure decision rules over what MLflow holds.

A controller is an object with typed parameters and one method, ``decide(records, steps)``,
where ``records`` are the chain's finished campaigns in order (``CampaignRecord``, read back
from MLflow by ``records.campaign_records``) and ``steps`` the chain's full budget. It returns a
``Decision``, which writes itself on the campaign's run (``to_run``) and reads itself back
(``from_record``). Nothing here touches MLflow or keeps state between calls: a test can
recompute every logged decision from the store alone. Which condition uses which controller
is ``conditions.py``'s table.

- ``Last``: the next campaign starts from the last step (naive, kl, ewc, grpo).
- ``ES``: within-campaign early stop; the next campaign starts from the peak checkpoint with
  budget ``min(steps, max(1, peak_step + slack))``.
- ``CARE``: between-campaign memory; a Beta posterior on the incumbent, a transfer gate, and
  regression-aware learning-rate decay and forgetting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence


from selfregress import metric_keys as K


@dataclass(frozen=True)
class CampaignRecord:
    """One finished campaign, as read back from MLflow."""
    index: int
    run_id: str
    start_model: str                 # models:/... URI (or path) the campaign started from
    pass_at_1: list[float]           # (budget + 1,) step 0 = the start checkpoint
    successes: list[int]             # (budget + 1,) eval/successes per step
    trials: list[int]                # (budget + 1,) eval/trials per step
    checkpoints: dict[int, str]      # step -> LoggedModel id, of the checkpoints whose weights are stored
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
        return {K.DECISION: self.decision, K.NEXT_START_MODEL: self.next_start_model}

    def metrics(self) -> dict[str, float]:
        out = {K.NEXT_BUDGET: float(self.next_budget), K.LR_MULTIPLIER: self.lr_multiplier}
        for key, value in ((K.PEAK_STEP, self.peak_step), (K.P_TRANSFER, self.p_transfer),
                           (K.P_REGRESS, self.p_regress)):
            if value is not None:
                out[key] = float(value)
        return out

    def to_run(self, run, step: int, extra_metrics: dict[str, float] | None = None) -> None:
        """Write the decision on a campaign run (a ``tracking.Run``), at the campaign's last step."""
        run.set_tags(self.tags())
        run.log_metrics({**self.metrics(), **(extra_metrics or {})}, step=step)

    @classmethod
    def from_run(cls, tags: dict[str, str], metrics: dict[str, float]) -> "Decision":
        """The decision a campaign run holds (its tags and latest metrics): the inverse of ``to_run``."""
        peak = metrics.get(K.PEAK_STEP)
        return cls(tags[K.DECISION], tags[K.NEXT_START_MODEL], int(metrics[K.NEXT_BUDGET]),
                   metrics[K.LR_MULTIPLIER], peak_step=None if peak is None else int(peak),
                   p_transfer=metrics.get(K.P_TRANSFER), p_regress=metrics.get(K.P_REGRESS))

    @classmethod
    def from_record(cls, record: CampaignRecord) -> "Decision":
        return cls.from_run(record.tags, record.metrics)


class Controller(Protocol):
    def decide(self, records: Sequence[CampaignRecord], steps: int) -> Decision: ...


def checkpoint_uri(record: CampaignRecord, step: int) -> str:
    if step not in record.checkpoints:
        raise ValueError(f"campaign {record.index} has no checkpoint at step {step} "
                         f"(it has {sorted(record.checkpoints)}): was it run with checkpoints=none?")
    return f"models:/{record.checkpoints[step]}"


# ---- last step ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Last:
    """The next campaign starts from this one's last step, with the full budget."""

    def decide(self, records: Sequence[CampaignRecord], steps: int) -> Decision:
        last = records[-1]
        return Decision("continue", checkpoint_uri(last, last.last_step), steps, 1.0)


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


@dataclass(frozen=True)
class ES:
    """Early stopping: roll forward to the campaign's peak, with a budget fit to where it peaked."""
    slack: int = 3             # next budget = min(steps, max(1, peak_step + slack))
    min_delta: float = 0.0     # a new peak must beat the old one by more than this
    patience: int = 0          # stop a campaign after this many steps without a new peak (0: never)

    def decide(self, records: Sequence[CampaignRecord], steps: int) -> Decision:
        last = records[-1]
        peak = peak_step(last.pass_at_1, self.min_delta)
        kind = "continue" if peak == last.last_step else "rollforward_peak"
        return Decision(kind, checkpoint_uri(last, peak), es_budget(peak, steps, self.slack), 1.0, peak_step=peak)

    def should_stop(self, curve: Sequence[float]) -> bool:
        return es_should_stop(curve, self.patience, self.min_delta)

    def is_peak(self, curve: Sequence[float]) -> bool:
        """Whether the curve's last step is its peak (a checkpoint ES may start from)."""
        return peak_step(curve, self.min_delta) == len(curve) - 1


# ---- CARE ---------------------------------------------------------------------------------
def prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X > Y) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2).

    = integral_0^1 f_X(x) F_Y(x) dx, by adaptive quadrature (the parameters need not be
    integers: CARE's forgetting scales them). Checked against Evan Miller's closed form.
    """
    from scipy import integrate, special, stats   # lazily: scipy.stats costs seconds, and readers need none

    value, _ = integrate.quad(lambda x: stats.beta.pdf(x, a1, b1) * special.betainc(a2, b2, x),
                              0.0, 1.0, epsabs=1e-11, epsrel=1e-10, limit=200)
    return min(1.0, max(0.0, value))


def prob_greater_closed_form(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X > Y) for integer a1 (Evan Miller, "Formulas for Bayesian A/B testing")."""
    from scipy import special

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


@dataclass(frozen=True)
class CARE:
    """Campaign-level memory: transfer to a campaign's end only if it beats the incumbent."""
    gate: float = 0.5          # transfer iff P(p_candidate > p_incumbent) >= gate
    regress: float = 0.8       # a regression iff P(p_end < p_start) >= regress (and an improvement, mirrored)
    lr_decay: float = 0.5      # lr multiplier after a regression (its inverse after an improvement, capped at 1)
    forget: float = 0.5        # scale of the incumbent posterior toward the prior after a regression

    def step(self, state: CareState, record: CampaignRecord, steps: int) -> tuple[CareState, Decision]:
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
        if p_regress >= self.regress:
            lr *= self.lr_decay
            alpha, beta = forget(alpha, beta, self.forget)
        elif p_improve >= self.regress:
            lr = min(1.0, lr / self.lr_decay)
        if p_transfer >= self.gate:
            kind, incumbent, alpha, beta = "transfer", checkpoint_uri(record, record.last_step), cand_a, cand_b
        else:
            kind, incumbent = "revert", state.incumbent
        new = CareState(incumbent, alpha, beta, lr)
        return new, Decision(kind, incumbent, steps, lr, p_transfer=p_transfer, p_regress=p_regress)

    def decide(self, records: Sequence[CampaignRecord], steps: int) -> Decision:
        """Fold ``step`` over the whole chain: the state is rebuilt from the records every time."""
        state = CareState(records[0].start_model, 1.0, 1.0, 1.0)
        decision = None
        for record in records:
            state, decision = self.step(state, record, steps)
        return decision
