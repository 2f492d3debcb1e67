"""The rise-and-collapse signature of a chain, measured on the selection split without max bias.

Every evaluation logs ``eval/successes_even`` and ``eval/trials_even``: the passing and graded
samples on the even-indexed tasks of the selection split, so each step's counts split into two
disjoint halves, A (even tasks) and B (odd tasks), of n = trials / 2 samples each (128 tasks).
``tune -P objective=signature`` scores a configuration by what these halves show; nothing here
reads the report split.

**The cross-fit rise and fall.** For one campaign, let a_t and b_t be the pass rates of halves
A and B at step t (t = 0 .. T). Pick the peak on A, k = peak_step(a), and measure on B:

    rise = b_k - b_0,    fall = b_k - b_T;

then swap the halves (peak on B, measure on A) and average the two. Given the checkpoints, the
two halves are independent draws (other tasks, other samples), so E[b_k | k] = beta_k, B's true
pass rate at the chosen step: the cross-fit rise estimates beta_k - beta_0 without the upward
bias of max_t b_t - b_0 (the max of T + 1 noisy values, about 2 sd above the truth at T = 20).
(Under ES, T is the stop that both halves chose: the fall is then measured to that chosen end.)
Under no change at all (beta_t constant) its expectation is exactly 0, which
``tests/test_signature.py`` checks by enumerating every outcome of a small case.

**In sd units.** sd = sqrt(p (1 - p) / n), the sd of one half's pass rate at the campaign's
mean pass rate p over both halves and all steps: the issue's "report-noise sd", on a half.
A campaign scores min(rise, fall) / sd: high only when it rises *and* falls back (0 when p is 0:
a dead chain shows nothing).

**The study's objective: the min of the means, not the mean of the mins.** ``tune`` scores a
configuration by ``min(mean rise, mean fall)``, each in sd and averaged over its (seed, campaign)
pairs (``study_score``), not by the mean of the per-campaign scores. Since
min(x, y) = (x + y - |x - y|) / 2, for noisy X and Y

    E[min(X, Y)] = (E X + E Y - E|X - Y|) / 2 = min(E X, E Y) - (E|X - Y| - |E X - E Y|) / 2,

below min(E X, E Y) by a gap that Jensen makes >= 0 and that grows with the noise of X - Y:
largest when rise and fall are both small and noisy.
The first regime study (``studies/regime/summary-regime-naive-signature.md``) met that flaw: a chain absorbed at 0 gives
rise = fall = 0 exactly (score 0, no noise), while a live chain that drifts up by 1 sd and back
scored about -0.2, so Optuna's best were dead chains. Averaging over every (seed, campaign) first
shrinks the noise before the min; a dead campaign counts as rise = fall = 0, so a chain absorbed
at 0 scores at most 0, and any configuration whose mean rise and mean fall are both positive
beats it. ``tests/test_signature.py`` checks the identity above and this ordering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from selfregress.controllers import peak_step


@dataclass(frozen=True)
class Signature:
    """One campaign's cross-fit figures, in pass-rate units, and the sd of one half's pass rate."""
    rise: float
    fall: float
    sd: float

    @property
    def score(self) -> float:
        """min(rise, fall) / sd: how far the campaign both rose and fell, in sd (0 if sd is 0)."""
        return min(self.rise, self.fall) / self.sd if self.sd > 0 else 0.0


def cross_fit(even: Sequence[int], odd: Sequence[int], even_trials: int, odd_trials: int) -> Signature:
    """The campaign's cross-fit rise and fall from its per-step successes on each half.

    ``even[t]`` and ``odd[t]``: passing samples on halves A and B at step t, of ``even_trials``
    and ``odd_trials`` samples. See the module docstring for what this estimates; with unequal
    halves (an odd number of tasks) sd uses their mean size.
    """
    if len(even) != len(odd) or not even:
        raise ValueError(f"need two equally long, non-empty curves, got {len(even)} and {len(odd)}")
    if min(even_trials, odd_trials) < 1:
        raise ValueError(f"each half needs at least 1 trial, got {even_trials} and {odd_trials}")
    a = [s / even_trials for s in even]
    b = [s / odd_trials for s in odd]
    rises, falls = [], []
    for select, measure in ((a, b), (b, a)):
        k = peak_step(select)
        rises.append(measure[k] - measure[0])
        falls.append(measure[k] - measure[-1])
    p = (sum(even) + sum(odd)) / (len(a) * (even_trials + odd_trials))
    half = (even_trials + odd_trials) / 2
    return Signature(rise=sum(rises) / 2, fall=sum(falls) / 2, sd=math.sqrt(p * (1 - p) / half))


def chain_signatures(store, campaign_runs) -> list[Signature]:
    """The cross-fit signature of each campaign run (in campaign order), read back from MLflow."""
    from selfregress import metric_keys as K
    from selfregress.errors import UserError

    out = []
    for run in sorted(campaign_runs, key=lambda r: int(r.data.tags[K.CAMPAIGN])):
        run_id = run.info.run_id
        histories = [store.metric_history(run_id, key) for key in
                     (K.EVAL_SUCCESSES, K.EVAL_TRIALS, K.EVAL_SUCCESSES_EVEN, K.EVAL_TRIALS_EVEN)]
        steps = sorted(histories[0])
        if any(sorted(h) != steps for h in histories[1:]):
            raise UserError(f"campaign run {run_id} has no {K.EVAL_SUCCESSES_EVEN} at every step: it was "
                            "logged by an older selfregress, so its signature cannot be measured; rerun it")
        successes, trials, even, even_trials = ([int(h[s]) for s in steps] for h in histories)
        if len(set(trials)) != 1 or len(set(even_trials)) != 1:
            raise UserError(f"campaign run {run_id} evaluated different numbers of samples at different steps")
        odd = [s - e for s, e in zip(successes, even)]
        out.append(cross_fit(even, odd, even_trials[0], trials[0] - even_trials[0]))
    return out


def in_sd(signature: Signature) -> tuple[float, float]:
    """(rise, fall) in sd of one half; (0, 0) for a dead campaign (p = 0 or 1: no noise, no change)."""
    if signature.sd <= 0:
        return 0.0, 0.0
    return signature.rise / signature.sd, signature.fall / signature.sd


def study_score(chains: Sequence[Sequence[Signature]]) -> tuple[float, float, float]:
    """(min(mean rise, mean fall), mean rise, mean fall), in sd, over every campaign of every chain.

    The tune objective (module docstring: the min of the means). Each chain weighs by its number
    of campaigns, so a pruned trial's running value uses the chains it has run.
    """
    pairs = [in_sd(s) for chain in chains for s in chain]
    if not pairs:
        raise ValueError("no campaign to score")
    rise = sum(r for r, _ in pairs) / len(pairs)
    fall = sum(f for _, f in pairs) / len(pairs)
    return min(rise, fall), rise, fall


def chain_figures(signatures: Sequence[Signature]) -> tuple[Sequence[Signature], dict[str, float]]:
    """(the signatures, the figures a tune trial logs for this chain): the campaign-0 rise and fall
    in sd, the chain's mean rise and fall in sd, and how many campaigns score at least 2 on their own."""
    rise0, fall0 = in_sd(signatures[0])
    _, rise, fall = study_score([signatures])
    return signatures, {"campaign0_rise_sd": rise0, "campaign0_fall_sd": fall0, "mean_rise_sd": rise,
                        "mean_fall_sd": fall, "campaigns_scoring_2sd": float(sum(s.score >= 2 for s in signatures))}
