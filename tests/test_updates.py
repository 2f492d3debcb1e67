"""The kl condition's penalty is the estimator chosen by name: k1 in the reward, k2/k3 in the loss."""

import pytest
import torch

from selfregress.losses import KL_ESTIMATORS
from selfregress.updates import NoPenalty, make_update


def kl_update(name: str):
    return make_update("kl", kl_beta=0.5, kl_estimator=name, max_new_tokens=4, ewc_lambda=0.0,
                       baseline="none", temperature=1.0, top_p=1.0)


def test_each_estimator_acts_where_it_should():
    logprobs = torch.tensor([[-0.2, -0.7, -0.4], [-0.3, -0.1, -0.9]], requires_grad=True)
    ref = torch.tensor([[-0.5, -0.5, -0.5], [-0.2, -0.3, -0.4]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    for name in ("k1", "k2", "k3"):
        penalty = kl_update(name).penalty
        assert penalty.estimator is KL_ESTIMATORS[name] and penalty.needs_reference
        reward, loss = penalty.reward(logprobs, ref, mask), penalty.loss(None, logprobs, ref, mask)
        if name == "k1":   # beta * sum_t log r per sequence: (0.3 - 0.2), (-0.1 + 0.2 - 0.5)
            assert reward.tolist() == pytest.approx([0.5 * 0.1, 0.5 * -0.4]) and not reward.requires_grad
            assert loss.item() == 0.0
        else:              # beta * sum_i value_i / (B * max_new_tokens) = 0.5 * sum / 8
            value = KL_ESTIMATORS[name].per_sequence(logprobs, ref, mask).sum()
            assert loss.item() == pytest.approx(0.5 * value.item() / 8) and loss.requires_grad
            assert reward.tolist() == [0.0, 0.0]
    with pytest.raises(KeyError):
        kl_update("k4")


def test_no_other_condition_runs_the_start_policy():
    for rule in ("reinforce", "grpo"):
        update = make_update(rule, kl_beta=0.5, kl_estimator="k1", max_new_tokens=4, ewc_lambda=0.0,
                             baseline="none", temperature=1.0, top_p=1.0)
        assert isinstance(update.penalty, NoPenalty) and not update.penalty.needs_reference
