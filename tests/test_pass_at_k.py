"""The unbiased pass@k estimator against hand-computed values."""

import math

import numpy as np
import pytest

from selfregress.evaluation import EvalResult, pass_at_k


@pytest.mark.parametrize("n, c, k, expected", [
    (4, 0, 1, 0.0),
    (4, 4, 1, 1.0),
    (4, 1, 1, 0.25),              # pass@1 = c / n
    (4, 1, 2, 0.5),               # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 3, 0.9),               # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_eval_result_metrics():
    # 3 tasks x 2 samples: successes 2, 0, 1 -> pass@1 = 3/6; pass@2 per task 1, 0, 1 -> 2/3
    passed = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    result = EvalResult(successes=np.array([2, 0, 1]), samples=2, programs=[""] * 6, passed=passed)
    metrics = result.metrics()
    assert metrics["pass_at_1"] == pytest.approx(0.5)
    assert metrics["pass_at_2"] == pytest.approx(2 / 3)
    assert (metrics["eval/successes"], metrics["eval/trials"]) == (3.0, 6.0)
