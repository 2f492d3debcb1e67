"""The update rule of a condition: the advantage function and the penalty, chosen once by name.

``make_update("reinforce" | "kl" | "ewc" | "grpo", ...)`` returns an ``Update``; a campaign's
steps call it for the advantages and the penalty. A penalty acts in one or both of two places:
``reward`` (B,) is subtracted from the rewards before the advantages (k1's KL), and ``loss`` ()
is added to the policy-gradient loss (k2/k3's KL, EWC). A new rule is a new penalty class (or
an advantage function in ``losses.ADVANTAGES``) and a branch in ``make_update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from selfregress.losses import ADVANTAGES, KL_ESTIMATORS, KLEstimator, ewc_penalty, update_ema
from selfregress.forcing import completion_logprobs


class Penalty(Protocol):
    needs_reference: bool   # whether it reads the start policy's log-probs (else they are None)

    def reward(self, logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
               mask: torch.Tensor) -> torch.Tensor: ...                      # (B,), detached

    def loss(self, policy, logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
             mask: torch.Tensor) -> torch.Tensor: ...                        # ()


class NoPenalty:
    needs_reference = False

    def reward(self, logprobs, ref_logprobs, mask):
        return logprobs.new_zeros(logprobs.shape[0])

    def loss(self, policy, logprobs, ref_logprobs, mask):
        return logprobs.new_zeros(())


@dataclass
class KLPenalty:
    """beta * KL(pi || pi_start) through one estimator of ``losses.KL_ESTIMATORS`` (in the reward
    for k1, in the loss for k2/k3); ``max_tokens`` normalises it like the policy-gradient loss."""
    beta: float
    estimator: KLEstimator
    max_tokens: int
    needs_reference = True

    def reward(self, logprobs, ref_logprobs, mask):
        return self.estimator.reward_penalty(self.beta, logprobs, ref_logprobs, mask)

    def loss(self, policy, logprobs, ref_logprobs, mask):
        return self.estimator.loss(self.beta, logprobs, ref_logprobs, mask, self.max_tokens)


@dataclass
class EWCPenalty:
    """lambda/2 * sum_i F_i (theta_i - theta*_i)^2, Fisher and anchor taken at the campaign start."""
    lam: float
    anchors: list[torch.Tensor]
    fisher: list[torch.Tensor]
    needs_reference = False

    def reward(self, logprobs, ref_logprobs, mask):
        return logprobs.new_zeros(logprobs.shape[0])

    def loss(self, policy, logprobs, ref_logprobs, mask):
        params = [p for p in policy.model.parameters() if p.requires_grad]
        return self.lam * ewc_penalty(params, self.anchors, self.fisher)


def diagonal_fisher(policy, samples, *, temperature: float, top_p: float) -> list[torch.Tensor]:
    """Empirical diagonal Fisher: the mean over sequences of (d log p~(y|x) / d theta)^2.

    p~ is the distribution the samples were drawn from (temperature and nucleus), as in the
    loss. One backward pass per sequence (per-sequence gradients must be squared before
    averaging); cheap for the tiny model, and taken once per campaign. Over the parameters that
    train: under LoRA, the adapters (so is EWC's anchor).
    """
    params = [p for p in policy.model.parameters() if p.requires_grad]
    fisher = [torch.zeros_like(p) for p in params]
    for row in range(samples.completion_ids.shape[0]):
        one = samples.select([row])
        with policy.autocast():
            logprobs, _ = completion_logprobs(policy.model, one, temperature=temperature, top_p=top_p,
                                              entropy=False)
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


def make_update(condition_update: str, *, kl_beta: float, kl_estimator: str, max_new_tokens: int,
                ewc_lambda: float, baseline: str, temperature: float, top_p: float,
                policy=None, fisher_samples=None) -> Update:
    """The condition's update, chosen once. ``condition_update`` is reinforce | kl | ewc | grpo."""
    advantage = "grpo" if condition_update == "grpo" else "reinforce"
    penalty: Penalty = NoPenalty()
    if condition_update == "kl":
        penalty = KLPenalty(kl_beta, KL_ESTIMATORS[kl_estimator], max_new_tokens)
    elif condition_update == "ewc":
        params = [p for p in policy.model.parameters() if p.requires_grad]
        penalty = EWCPenalty(ewc_lambda, [p.detach().clone() for p in params],
                             diagonal_fisher(policy, fisher_samples, temperature=temperature, top_p=top_p))
    return Update(ADVANTAGES[advantage], penalty, baseline)
