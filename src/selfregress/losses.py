"""The maths of the update: advantages, the policy-gradient loss, and the KL and EWC terms.

Pure functions on tensors, shapes in comments. A condition picks its advantage function once
by name (``ADVANTAGES``); nothing here branches on the condition.

Notation: B completions, T completion tokens (right-padded), G samples per prompt.
"""

from __future__ import annotations

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


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """Per-token KL(pi || pi_ref) with Schulman's k3 estimator, averaged over valid tokens.

    With samples from pi and log r = log pi_ref - log pi: k3 = r - 1 - log r, which is >= 0,
    unbiased for KL(pi || pi_ref), and lower-variance than -log r (http://joschu.net/blog/kl-approx.html).
    logprobs (with grad), ref_logprobs (no grad), mask: (B, T).
    """
    log_ratio = ref_logprobs - logprobs                              # (B, T)
    k3 = torch.exp(log_ratio) - 1.0 - log_ratio                      # (B, T)
    return (k3 * mask).sum() / mask.sum().clamp(min=1)


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
