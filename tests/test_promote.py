"""promote selects on one part of the test split and reports on another: no winner's curse.

``choose_and_report`` is the rule; what it calls ``score`` with is simulated here (a binomial
pass@1, the part that needs real checkpoints runs in tests/chain/test_sweep_report_promote.py).
"""

import numpy as np
import pytest

from selfregress.promote import PromoteConfig, choose_and_report, split_test
from selfregress.config import parse
from selfregress.errors import UserError


def test_the_two_parts_are_disjoint_halves():
    tasks = [object() for _ in range(7)]
    selection, report = split_test(tasks)
    assert (len(selection), len(report)) == (3, 4) and selection + report == tasks
    with pytest.raises(ValueError, match="overlap"):
        choose_and_report(["a"], lambda c, t: 0.0, tasks[:2], tasks[1:])
    with pytest.raises(UserError, match="'test_tasks' must be at least 2"):
        parse(PromoteConfig, {"test_tasks": "1"})


def test_only_the_winner_is_scored_on_the_report_part():
    selection, report = [object()], [object()]
    calls = []

    def score(candidate, tasks):
        calls.append((candidate, "selection" if tasks is selection else "report"))
        return {"a": 0.2, "b": 0.5, "c": 0.5}[candidate] + (0.01 if tasks is report else 0.0)

    assert choose_and_report(["a", "b", "c"], score, selection, report) == (1, [0.2, 0.5, 0.5], 0.51)
    assert calls == [("a", "selection"), ("b", "selection"), ("c", "selection"), ("b", "report")]


def test_the_reported_score_is_unbiased_where_the_selected_one_is_not():
    # 10 candidates of the same true pass@1 (0.3), each scored on 64 tasks x 2 samples per part.
    # The best selection score is a maximum of 10 (about +1.5 sd = +6 points); the winner's
    # score on the report part is one fresh evaluation, so its mean over 400 repeats is 0.3.
    rng = np.random.default_rng(0)
    selection, report = split_test([object() for _ in range(128)])

    def score(candidate, tasks):
        return rng.binomial(2 * len(tasks), 0.3) / (2 * len(tasks))

    picked, reported = [], []
    for _ in range(400):
        index, selected, value = choose_and_report(list(range(10)), score, selection, report)
        picked.append(selected[index])
        reported.append(value)
    sd = np.sqrt(0.3 * 0.7 / 128)                                   # one evaluation's sd: 0.0405
    assert np.mean(picked) - 0.3 > 1.2 * sd                         # the winner's curse
    assert abs(np.mean(reported) - 0.3) < 3 * sd / np.sqrt(400)     # none on the report part
