"""The audit's noise and cross-fit gap, as pure functions of per-task counts, worked by hand."""

import numpy as np
import pytest

from selfregress.audit import checkpoint_noise, crossfit_gap, gap_in_noise


def test_checkpoint_noise_by_hand():
    # 2 re-evaluations x 3 tasks, 2 samples each: pass@1 per repeat 3/6 and 2/6.
    noise = checkpoint_noise(np.array([[1, 0, 2], [0, 0, 2]]), samples=2)
    assert noise["pass_at_1"] == pytest.approx(5 / 12)
    assert noise["seed_sd"] == pytest.approx((0.5 - 1 / 3) / np.sqrt(2))
    # per-task rates (1/4, 0, 1): var (ddof 1) 0.270833, / 3 tasks -> sd 0.300463
    assert noise["task_sd"] == pytest.approx(0.300463, abs=1e-6)
    assert noise["collapsed"] is False


def test_a_collapsed_checkpoint_is_flagged_with_zero_noise():
    noise = checkpoint_noise(np.zeros((3, 5), dtype=int), samples=2)
    assert noise["collapsed"] is True and noise["seed_sd"] == 0.0 and noise["task_sd"] == 0.0


def test_crossfit_gap_is_paired_by_task():
    gap, sd = crossfit_gap(np.array([0.5, 0.25, 1.0]), np.array([0.0, 0.25, 0.5]))
    assert gap == pytest.approx(1 / 3) and sd == pytest.approx(1 / 6)    # sd(.5, 0, .5) / sqrt 3
    assert gap_in_noise(gap, sd) == pytest.approx(2.0)
