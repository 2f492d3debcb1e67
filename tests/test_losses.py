"""Advantages and losses against numbers worked out by hand."""

import math

import pytest
import torch

from selfregress.losses import (distinct_ratio, ewc_penalty, grpo_advantages, kl_k3,
                                policy_gradient_loss, reinforce_advantages, update_ema)


def test_reinforce_has_no_baseline_by_default():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert reinforce_advantages(rewards, 2).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert reinforce_advantages(rewards, 2, baseline=0.25).tolist() == [0.75, -0.25, -0.25, 0.75]


def test_grpo_normalises_within_each_group():
    # group 1: [1, 0, 0, 0]: mean 0.25, population std sqrt(0.1875) = 0.4330127
    # group 2: all equal -> zero advantage
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    adv = grpo_advantages(rewards, 4, eps=0.0 + 1e-12)
    s = math.sqrt(0.1875)
    assert adv[:4].tolist() == pytest.approx([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s])
    assert adv[4:].tolist() == pytest.approx([0.0] * 4)


def test_ema():
    assert update_ema(None, 0.4) == 0.4
    assert update_ema(0.4, 1.0, decay=0.9) == pytest.approx(0.46)


def test_policy_gradient_loss_and_its_gradient():
    # two sequences, T = 3, second has one padded token; max_tokens = 4
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -0.2, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    loss = policy_gradient_loss(logprobs, mask, adv, max_tokens=4)
    # -(1 * -3.5 + -2 * -0.3) / (2 * 4) = -(-3.5 + 0.6) / 8 = 0.3625
    assert loss.item() == pytest.approx(0.3625)
    loss.backward()
    # d loss / d logprob_it = -A_i * mask_it / 8
    expected = torch.tensor([[-1 / 8] * 3, [2 / 8, 2 / 8, 0.0]])
    assert torch.allclose(logprobs.grad, expected)


def test_kl_k3_is_zero_at_the_reference_and_matches_hand_value():
    logprobs = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    assert kl_k3(logprobs, logprobs, mask).item() == pytest.approx(0.0)
    ref = torch.tensor([[-1.5, -2.0]])
    # token 1: log r = -0.5 -> e^-0.5 - 1 + 0.5 = 0.1065307; token 2: 0 -> mean 0.0532653
    assert kl_k3(logprobs, ref, mask).item() == pytest.approx((math.exp(-0.5) - 0.5) / 2)


def test_kl_k3_ignores_masked_tokens():
    logprobs = torch.tensor([[-1.0, -5.0]])
    ref = torch.tensor([[-1.0, -1.0]])
    assert kl_k3(logprobs, ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0)


def test_ewc_penalty():
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchor = [torch.tensor([0.0, 2.0]), torch.tensor([[1.5]])]
    fisher = [torch.tensor([2.0, 100.0]), torch.tensor([[4.0]])]
    # 0.5 * (2 * 1 + 100 * 0 + 4 * 1) = 3
    assert ewc_penalty(theta, anchor, fisher).item() == pytest.approx(3.0)


def test_distinct_ratio():
    assert distinct_ratio(["a", "b", "a", "a"]) == 0.5
    assert distinct_ratio([]) == 0.0
