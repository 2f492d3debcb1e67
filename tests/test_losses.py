"""Advantages and losses against numbers worked out by hand."""

import math

import pytest
import torch

from selfregress.losses import (KL_ESTIMATORS, distinct_ratio, ewc_penalty, grpo_advantages, k1_sequence,
                                k2_sequence, k3_sequence, policy_gradient_loss, reinforce_advantages,
                                update_ema)


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


def test_k3_is_zero_at_the_reference_and_matches_hand_value():
    logprobs = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    assert k3_sequence(logprobs, logprobs, mask).item() == pytest.approx(0.0)
    ref = torch.tensor([[-1.5, -2.0]])
    # token 1: log r = -0.5 -> e^-0.5 - 1 + 0.5 = 0.1065307; token 2: 0 -> sequence sum 0.1065307
    assert k3_sequence(logprobs, ref, mask).item() == pytest.approx(math.exp(-0.5) - 0.5)


def test_k3_ignores_masked_tokens():
    logprobs = torch.tensor([[-1.0, -5.0]])
    ref = torch.tensor([[-1.0, -1.0]])
    assert k3_sequence(logprobs, ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0)


def test_the_config_offers_exactly_the_estimators():
    from selfregress.conditions import KL_ESTIMATOR_NAMES
    assert tuple(KL_ESTIMATORS) == KL_ESTIMATOR_NAMES


def test_ewc_penalty():
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchor = [torch.tensor([0.0, 2.0]), torch.tensor([[1.5]])]
    fisher = [torch.tensor([2.0, 100.0]), torch.tensor([[4.0]])]
    # 0.5 * (2 * 1 + 100 * 0 + 4 * 1) = 3
    assert ewc_penalty(theta, anchor, fisher).item() == pytest.approx(3.0)


def test_distinct_ratio():
    assert distinct_ratio(["a", "b", "a", "a"]) == 0.5
    assert distinct_ratio([]) == 0.0


# ---- KL estimators: expected gradients against exact enumeration -------------------------------


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p (log p - log q) over the last axis, from log-probs."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def _grad(value: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params, retain_graph=True)])


def _expected_grads(logprobs, ref, seq_prob, params):
    """E_{y~pi} of each estimator's gradient, by exact enumeration of the outcomes y (rows).

    k2, k3 (losses): grad sum_y sg(pi(y)) value(y). k1 (reward): the REINFORCE surrogate of the
    reward -k1, i.e. sum_y sg(pi(y)) sg(k1(y)) log pi(y), the policy-gradient loss with A = -k1.
    """
    weight = seq_prob.detach()                                              # (Y,)
    mask = torch.ones_like(logprobs)
    k1 = KL_ESTIMATORS["k1"].reward_penalty(1.0, logprobs, ref, mask)        # (Y,) detached
    return {"k1": _grad((weight * k1 * logprobs.sum(1)).sum(), params),
            "k2": _grad((weight * k2_sequence(logprobs, ref, mask)).sum(), params),
            "k3": _grad((weight * k3_sequence(logprobs, ref, mask)).sum(), params)}


def test_one_token_k1_and_k2_follow_kl_pi_start_and_k3_the_reverse():
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, generator=gen, dtype=torch.float64).mul(1.5).requires_grad_()
    ref_log = torch.randn(3, generator=gen, dtype=torch.float64).log_softmax(-1)
    log_pi = theta.log_softmax(-1)                                           # (3,) all outcomes
    expected = _expected_grads(log_pi[:, None], ref_log[:, None], log_pi.exp(), [theta])
    forward = _grad(_kl(theta.log_softmax(-1), ref_log), [theta])           # grad KL(pi || pi_s)
    reverse = _grad(_kl(ref_log, theta.log_softmax(-1)), [theta])           # grad KL(pi_s || pi)
    assert torch.allclose(expected["k1"], forward, atol=1e-12)
    assert torch.allclose(expected["k2"], forward, atol=1e-12)
    assert torch.allclose(expected["k3"], reverse, atol=1e-12)
    assert (expected["k3"] - forward).norm() > 0.1 * forward.norm()         # k3 is not the forward one


def _two_token_model(seed: int = 1):
    """pi(y1) = softmax(a), pi(y2 | y1) = softmax(b[y1]): 9 sequences over a 3-symbol vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(3, generator=gen, dtype=torch.float64).mul(1.5).requires_grad_()
    b = torch.randn(3, 3, generator=gen, dtype=torch.float64).mul(1.5).requires_grad_()
    ref_a = torch.randn(3, generator=gen, dtype=torch.float64).log_softmax(-1)
    ref_b = torch.randn(3, 3, generator=gen, dtype=torch.float64).log_softmax(-1)
    return a, b, ref_a, ref_b


def _enumerate(log_first, log_second):
    """(9, 2) per-token log-probs of every sequence (y1, y2), y1-major."""
    y1 = torch.arange(3).repeat_interleave(3)
    y2 = torch.arange(3).repeat(3)
    return torch.stack([log_first[y1], log_second[y1, y2]], dim=1)


def test_two_token_sequences_k1_is_exact_k2_and_k3_are_per_context():
    a, b, ref_a, ref_b = _two_token_model()
    params = [a, b]
    log_a, log_b = a.log_softmax(-1), b.log_softmax(-1)
    logprobs = _enumerate(log_a, log_b)                                      # (9, 2)
    ref = _enumerate(ref_a, ref_b)
    seq_prob = logprobs.sum(1).exp()                                         # (9,) sums to 1
    assert seq_prob.sum().item() == pytest.approx(1.0)
    expected = _expected_grads(logprobs, ref, seq_prob, params)

    # Exact sequence KLs by enumeration, both directions.
    forward = _grad((seq_prob * (logprobs - ref).sum(1)).sum(), params)      # KL(pi || pi_s)
    ref_prob = ref.sum(1).exp()
    reverse = _grad((ref_prob * (ref - logprobs).sum(1)).sum(), params)     # KL(pi_s || pi)
    # The per-context objectives: token-level KLs with the first token's distribution held fixed.
    first = log_a.exp().detach()
    forward_local = _grad(_kl(log_a, ref_a) + (first * _kl(log_b, ref_b)).sum(), params)
    reverse_local = _grad(_kl(ref_a, log_a) + (first * _kl(ref_b, log_b)).sum(), params)

    assert torch.allclose(expected["k1"], forward, atol=1e-12)               # k1 in the reward: exact
    assert torch.allclose(expected["k2"], forward_local, atol=1e-12)         # k2: the partial gradient
    assert torch.allclose(expected["k3"], reverse_local, atol=1e-12)         # k3: reverse, per context
    # ... and the partial ones are not the sequence gradients (the future-token term is missing).
    assert (expected["k2"] - forward).norm() > 0.05 * forward.norm()
    assert (expected["k3"] - reverse).norm() > 0.05 * reverse.norm()
    assert (expected["k3"] - forward).norm() > 0.05 * forward.norm()
    # The missing term is E[grad log pi(y1) * log r_2]: the first token charged with the second's KL.
    missing = _grad((seq_prob.detach() * logprobs[:, 0] * (logprobs[:, 1] - ref[:, 1]).detach()).sum(), params)
    assert torch.allclose(expected["k2"] + missing, forward, atol=1e-12)


def test_estimators_by_hand_and_registry():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, -0.1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])                                   # third token is padding
    # log r = (0.5, 0, pad): k1 = 0.5, k2 = 0.125, k3 = e^-0.5 - 1 + 0.5
    assert k1_sequence(logprobs, ref, mask).tolist() == pytest.approx([0.5])
    assert k2_sequence(logprobs, ref, mask).tolist() == pytest.approx([0.125])
    assert k3_sequence(logprobs, ref, mask).tolist() == pytest.approx([math.exp(-0.5) - 0.5])
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}
    assert "reverse" in KL_ESTIMATORS["k3"].direction and KL_ESTIMATORS["k1"].in_reward
    assert not (KL_ESTIMATORS["k2"].in_reward or KL_ESTIMATORS["k3"].in_reward)


def test_beta_weighs_a_nat_of_sequence_kl_alike_at_every_length():
    # The deliberate choice: per-sequence sums over (B * max_tokens), the policy-gradient loss's
    # constant. Row 0 is fixed; row 1 is 1 token long in one batch, 3 tokens long in the other.
    ref = torch.zeros(2, 3)
    short = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    long = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    beta, max_tokens = 0.3, 4
    for name in ("k2", "k3"):
        grads = []
        for mask in (short, long):
            logprobs = torch.tensor([[-0.2, -0.7, -0.4], [-0.3, -0.1, -0.9]], requires_grad=True)
            KL_ESTIMATORS[name].loss(beta, logprobs, ref, mask, max_tokens).backward()
            grads.append(logprobs.grad[0].clone())
        assert torch.equal(grads[0], grads[1]), name                         # row 0 unaffected
        if name == "k2":   # d/d logprob of beta * (1/2)(log r)^2 / (B * max_tokens) = beta log r / 8
            assert grads[0].tolist() == pytest.approx([beta * -0.2 / 8, beta * -0.7 / 8, 0.0])
    # k1: the reward penalty of a sequence is beta * its summed log-ratio; twice the tokens at
    # the same per-token KL cost twice as much, and padding costs nothing.
    logprobs = torch.full((2, 4), -0.5)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    penalty = KL_ESTIMATORS["k1"].reward_penalty(beta, logprobs, torch.full((2, 4), -1.0), mask)
    assert penalty.tolist() == pytest.approx([beta * 1.0, beta * 2.0])
    assert KL_ESTIMATORS["k1"].loss(beta, logprobs, ref.new_zeros(2, 4), mask, 4).item() == 0.0
    # The old per-token mean did not have this property: row 0's weight moved with row 1's length.
    grads = []
    for mask in (short, long):
        logprobs = torch.tensor([[-0.2, -0.7, -0.4], [-0.3, -0.1, -0.9]], requires_grad=True)
        # the old k3 loss: per-token mean over the batch's valid tokens
        (k3_sequence(logprobs, ref, mask).sum() / mask.sum()).backward()
        grads.append(logprobs.grad[0].clone())
    assert not torch.allclose(grads[0], grads[1])
