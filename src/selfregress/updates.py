"""The update rule of a condition: the advantage function and the penalty, chosen once by name.

``make_update("reinforce" | "kl" | "ewc" | "grpo", ...)`` returns an ``Update``; a campaign's
steps call it for the advantages and the penalty. A new rule is a new penalty class (or an
advantage function in ``losses.ADVANTAGES``) and a branch in ``make_update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from selfregress.losses import ADVANTAGES, ewc_penalty, kl_k3, update_ema
from selfregress.sampling import completion_logprobs


class Penalty(Protocol):
    def __call__(self, policy, samples, logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor: ...


def no_penalty(policy, samples, logprobs, ref_logprobs):
    return logprobs.new_zeros(())


@dataclass
class KLPenalty:
    """beta * KL(pi || pi_start), k3 estimator on the step's own samples."""
    beta: float

    def __call__(self, policy, samples, logprobs, ref_logprobs):
        return self.beta * kl_k3(logprobs, ref_logprobs, samples.completion_mask)


@dataclass
class EWCPenalty:
    """lambda/2 * sum_i F_i (theta_i - theta*_i)^2, Fisher and anchor taken at the campaign start."""
    lam: float
    anchors: list[torch.Tensor]
    fisher: list[torch.Tensor]

    def __call__(self, policy, samples, logprobs, ref_logprobs):
        params = [p for p in policy.model.parameters() if p.requires_grad]
        return self.lam * ewc_penalty(params, self.anchors, self.fisher)


def diagonal_fisher(policy, samples) -> list[torch.Tensor]:
    """Empirical diagonal Fisher: the mean over sequences of (d log p(y|x) / d theta)^2.

    One backward pass per sequence (per-sequence gradients must be squared before averaging);
    cheap for the tiny model, and taken once per campaign.
    """
    params = [p for p in policy.model.parameters() if p.requires_grad]
    fisher = [torch.zeros_like(p) for p in params]
    for row in range(samples.completion_ids.shape[0]):
        one = samples.select([row])
        logprobs, _ = completion_logprobs(policy.model, one)
        grads = torch.autograd.grad((logprobs * one.completion_mask).sum(), params, allow_unused=True)
        for f, g in zip(fisher, grads):
            if g is not None:
                f += g.detach() ** 2
    n = samples.completion_ids.shape[0]
    return [f / n for f in fisher]


@dataclass
class Update:
    advantages: Callable[..., torch.Tensor]
    penalty: Penalty
    baseline: str                 # "none" | "mean" | "ema" (REINFORCE only)
    ema: float | None = None      # running EMA of the reward, for baseline == "ema"

    def advantages_for(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        if self.advantages is not ADVANTAGES["reinforce"] or self.baseline == "none":
            return self.advantages(rewards, group_size)
        if self.baseline == "mean":
            return self.advantages(rewards, group_size, baseline=rewards.mean().item())
        baseline = 0.0 if self.ema is None else self.ema
        self.ema = update_ema(self.ema, rewards.mean().item())
        return self.advantages(rewards, group_size, baseline=baseline)


def make_update(condition_update: str, *, kl_beta: float, ewc_lambda: float, baseline: str,
                policy=None, fisher_samples=None) -> Update:
    """The condition's update, chosen once. ``condition_update`` is reinforce | kl | ewc | grpo."""
    advantage = "grpo" if condition_update == "grpo" else "reinforce"
    penalty: Penalty = no_penalty
    if condition_update == "kl":
        penalty = KLPenalty(kl_beta)
    elif condition_update == "ewc":
        params = [p for p in policy.model.parameters() if p.requires_grad]
        penalty = EWCPenalty(ewc_lambda, [p.detach().clone() for p in params],
                             diagonal_fisher(policy, fisher_samples))
    return Update(ADVANTAGES[advantage], penalty, baseline)
