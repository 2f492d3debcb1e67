"""The maths of the update: advantages, the policy-gradient loss, and the KL and EWC terms.

Pure functions on tensors, shapes in comments. A condition picks its advantage function once
by name (``ADVANTAGES``), and the kl condition its KL estimator (``KL_ESTIMATORS``); nothing
here branches on the condition.

Notation: B completions, T completion tokens (right-padded), G samples per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


# ---- advantages ------------------------------------------------------------------------------
def reinforce_advantages(rewards: Tensor, group_size: int, baseline: float = 0.0) -> Tensor:
    """Naive REINFORCE (the paper's A0): A_i = r_i - b, with b = 0 by default.

    rewards: (B,) in {0, 1}. With b = 0 only passing samples are reinforced, so a batch with
    no pass gives exactly zero gradient: zero reward is absorbing.
    """
    return rewards - baseline                                        # (B,)


def grpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean_g) / (std_g + eps) per group.

    rewards: (B,) with B = n_prompts * G, rows of one prompt adjacent. std_g is the population
    standard deviation of the group; a group whose samples all agree gets zero advantage.
    """
    groups = rewards.view(-1, group_size)                            # (B/G, G)
    mean = groups.mean(dim=1, keepdim=True)                          # (B/G, 1)
    std = groups.std(dim=1, unbiased=False, keepdim=True)            # (B/G, 1)
    return ((groups - mean) / (std + eps)).view(-1)                  # (B,)


def update_ema(previous: float | None, value: float, decay: float = 0.9) -> float:
    """The EMA reward baseline across steps; the first step takes the value itself."""
    return value if previous is None else decay * previous + (1 - decay) * value


ADVANTAGES: dict[str, Callable[..., Tensor]] = {
    "reinforce": reinforce_advantages,
    "grpo": grpo_advantages,
}


# ---- losses ---------------------------------------------------------------------------------
def policy_gradient_loss(logprobs: Tensor, mask: Tensor, advantages: Tensor,
                         max_tokens: int) -> Tensor:
    """-(1 / (B * max_tokens)) * sum_i A_i * sum_t log pi(y_it | x_i, y_i<t).

    logprobs, mask: (B, T); advantages: (B,). The sequence log-prob is summed (the REINFORCE
    estimator of grad E[r]) and normalised by a constant, not by each sequence's length, so
    short and long completions are weighted alike (the "Dr. GRPO" correction, Liu et al. 2025).
    """
    sequence_logprob = (logprobs * mask).sum(dim=1)                  # (B,)
    return -(advantages * sequence_logprob).sum() / (logprobs.shape[0] * max_tokens)


# ---- KL(pi || pi_start): three estimators, chosen once by name ---------------------------------
# Notation: y ~ pi is a completion, log r_t = log pi(y_t | c_t) - log pi_start(y_t | c_t) at its
# context c_t = (x, y_<t), log r(y) = sum_t log r_t. The KL of sequences is
#     KL(pi || pi_s) = E_{y~pi}[log r(y)],   grad KL(pi || pi_s) = E_{y~pi}[log r(y) grad log pi(y)]
# (the second term of the product rule, E[grad log pi(y)], is 0). Causality splits this into
#     E[sum_t grad log pi(y_t|c_t) * sum_{s>=t} log r_s]: a token's choice is charged with the KL
# of every later token, because it moves the contexts they are sampled in (Tang & Munos 2025,
# "On a few pitfalls in KL divergence gradient estimation for RL", arXiv:2506.09477).
#
# Each estimator maps (logprobs, ref_logprobs, mask), all (B, T), to a per-sequence value (B,):
# a *sum* over the sequence's valid tokens, never a per-token mean, so that beta weighs a nat of
# sequence KL the same whatever the completion's length. ``KLEstimator`` then puts beta * value
# either into the reward (k1) or into the loss, scaled by 1 / (B * max_tokens) exactly like
# ``policy_gradient_loss``: either way the update follows (1 / max_tokens) * grad(E[R] - beta KL).
def k1_sequence(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """k1 = log r(y) = sum_t (log pi - log pi_start), per sequence (B,), detached: a reward term.

    Unbiased for the value KL(pi || pi_start). Subtracted (times beta) from the reward before the
    advantages, the REINFORCE update -E[(R - beta log r(y)) grad log pi(y)] has the penalty part
    beta * E[log r(y) grad log pi(y)] = beta * grad KL(pi || pi_start): exact for the whole
    sequence, future-token term included. Differentiated as a loss instead, E[grad k1] = 0.
    Under GRPO's group normalisation the shaped reward is divided by the group's sd, so beta
    is then relative to that sd, not in reward units.
    """
    return ((logprobs - ref_logprobs).detach() * mask).sum(dim=1)


def k2_sequence(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """k2 = sum_t (1/2) (log r_t)^2 per sequence (B,), with grad: a loss term.

    At one context c, grad (1/2) (log r)^2 = log r * grad log pi(y | c), whose mean over
    y ~ pi(.|c) is grad KL(pi(.|c) || pi_start(.|c)): exact for one token. Over a sequence it is
    sum_t E[log r_t grad log pi(y_t|c_t)], the gradient of the per-token KLs with the contexts
    held where they were sampled; it omits the future-token term above, i.e. how a token moves
    the contexts of the tokens after it (the "partial gradient" of Tang & Munos 2025). Lower
    variance than k1; biased for the sequence KL's gradient unless T = 1.
    """
    log_ratio = logprobs - ref_logprobs                                  # (B, T)
    return (0.5 * log_ratio ** 2 * mask).sum(dim=1)


def k3_sequence(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """k3 = sum_t (rho_t - 1 - log rho_t), rho_t = pi_start / pi at token t, per sequence (B,).

    As a *value* (detached) it is the best of the three: >= 0 and unbiased for KL(pi || pi_start)
    (Schulman, http://joschu.net/blog/kl-approx.html), so log it. As a *loss* it is the REVERSE
    KL: grad k3 = (1 - rho) grad log pi, and E_{y~pi}[(1 - rho) grad log pi] = -sum_y pi_start
    grad log pi = grad KL(pi_start || pi) at each context. Over a sequence, the per-context
    reverse KLs at contexts sampled from pi (neither sequence KL). This is GRPO's and TRL's
    "KL loss".
    """
    log_rho = ref_logprobs - logprobs                                    # (B, T)
    return ((torch.exp(log_rho) - 1.0 - log_rho) * mask).sum(dim=1)


@dataclass(frozen=True)
class KLEstimator:
    """beta * KL in the update, one way; pick it once from ``KL_ESTIMATORS`` by name."""
    name: str
    direction: str        # what its expected gradient is the gradient of
    in_reward: bool       # True: beta * value is subtracted from the reward; False: added to the loss
    per_sequence: Callable[[Tensor, Tensor, Tensor], Tensor]   # (B, T) x 3 -> (B,)

    def reward_penalty(self, beta: float, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
        """(B,) detached, to subtract from the rewards before the advantages (0 unless in_reward)."""
        if not self.in_reward:
            return logprobs.new_zeros(logprobs.shape[0])
        return beta * self.per_sequence(logprobs.detach(), ref_logprobs.detach(), mask)

    def loss(self, beta: float, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor,
             max_tokens: int) -> Tensor:
        """() to add to ``policy_gradient_loss``: beta * sum_i value_i / (B * max_tokens) (0 if in_reward)."""
        if self.in_reward:
            return logprobs.new_zeros(())
        value = self.per_sequence(logprobs, ref_logprobs.detach(), mask)          # (B,)
        return beta * value.sum() / (logprobs.shape[0] * max_tokens)


KL_ESTIMATORS: dict[str, KLEstimator] = {
    "k1": KLEstimator("k1", "KL(pi || pi_start), whole sequence (k1 in the reward)", True, k1_sequence),
    "k2": KLEstimator("k2", "KL(pi || pi_start) per token, contexts held fixed (k2 loss)", False, k2_sequence),
    "k3": KLEstimator("k3", "reverse KL: KL(pi_start || pi) per token (k3 loss)", False, k3_sequence),
}


def ewc_penalty(params: list[Tensor], anchors: list[Tensor], fisher: list[Tensor]) -> Tensor:
    """Elastic weight consolidation (Kirkpatrick et al. 2017): (1/2) sum_i F_i (theta_i - theta*_i)^2.

    The caller multiplies by lambda. params/anchors/fisher: matching lists of tensors.
    """
    total = params[0].new_zeros(())
    for theta, anchor, f in zip(params, anchors, fisher):
        total = total + (f * (theta - anchor) ** 2).sum()
    return 0.5 * total


def distinct_ratio(programs: list[str]) -> float:
    """Share of distinct programs in a batch: 1 = all different, 1/B = one program. Mode collapse shows here."""
    return len(set(programs)) / max(len(programs), 1)
