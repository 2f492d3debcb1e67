"""Every task source is gradable: its reference solutions pass the real grader.

Synthetic: a sample of every split. Datasets: the fixture files in each native format
(LiveCodeBench ships no solutions, so ours are used). Each pair also gets a wrong program,
so a grader that passes everything cannot satisfy this test.
"""

import pytest

from selfregress.tasks import SPLITS, load_tasks

grader = pytest.importorskip("grader")


def _grade(pairs):
    verdicts = grader.grade_many(pairs, workers=2)
    return [bool(v.passed) for v in verdicts]


def test_synthetic_references_pass_the_grader(default_splits):
    tasks = [t for name in SPLITS for t in getattr(default_splits, name)[:60]]
    passed = _grade([(t.solutions[0], t) for t in tasks])
    assert all(passed), [t.task_id for t, ok in zip(tasks, passed) if not ok]
    # Dicts in schema form grade too; and a wrong program fails.
    assert _grade([(tasks[0].solutions[0], tasks[0].to_dict()), ("print(0)", tasks[0])]) == [True, False]


def test_dataset_references_pass_the_grader(datasets, records):
    pairs = []
    for fmt, path in datasets.items():
        for task in load_tasks(f"{fmt}:{path}", **({"allow_pickle": True} if fmt == "livecodebench" else {})):
            programs = task.solutions or (records["livecodebench_references"][task.task_id],)
            pairs += [(program, task) for program in programs]
    passed = _grade(pairs)
    assert all(passed), [(t.task_id, p) for (p, t), ok in zip(pairs, passed) if not ok]
    wrong = [("print('?')" if t.fn_name is None else f"def {t.fn_name}(*a):\n    return '?'\n"
              f"class Solution:\n    def {t.fn_name}(self, *a):\n        return '?'\n", t) for _, t in pairs]
    assert not any(_grade(wrong))
