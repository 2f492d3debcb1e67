"""The report split decides nothing, and its figures are logged once, resumably.

Two chains that differ only in their report split (its size and samples per task) must make
the same decisions on the same selection curves; a grader that records which tasks each call
graded shows that only the report evaluations ever touch a report-split task.
"""

from __future__ import annotations

import pytest

from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.config import parse
from selfregress.controllers import Decision
from selfregress.records import campaign_records, report_split, split_tasks
from selfregress.report_eval import ReportEvaluator, report_steps

from .conftest import TINY_CHAIN


class GradeLog:
    """The real grader, recording the task ids of each ``grade_many`` call (every verdict is the
    grader's own: this only watches which tasks are graded)."""

    def __init__(self, grader):
        self.grader, self.calls = grader, []

    def grade_many(self, pairs):
        self.calls.append({task.task_id for _, task in pairs})
        return self.grader.grade_many(pairs)


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def decisions(records) -> list[tuple]:
    """Each campaign's decision, with its next start as a step (checkpoint ids differ between chains)."""
    out = []
    for r in records:
        d = Decision.from_record(r)
        step = {f"models:/{m}": s for s, m in r.checkpoints.items()}.get(d.next_start_model, d.next_start_model)
        out.append((d.decision, step, d.next_budget, d.lr_multiplier, d.peak_step, d.p_transfer, d.p_regress))
    return out


@pytest.mark.parametrize("condition", ["es", "care"])
def test_no_decision_reads_the_report_split(condition, mlflow_store, grader_pool, tiny_base):
    seen = {}
    for report in (dict(report_tasks=3, report_samples=1), dict(report_tasks=6, report_samples=2)):
        config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "condition": condition, "seed": 5,
                                     "rl_tasks": 8, **report})
        graded = GradeLog(grader_pool)
        chain_id = run_chain(config, mlflow_store, graded, tiny_base, log=lambda m: None)
        seen[report["report_tasks"]] = (config, campaign_records(mlflow_store, chain_id), graded.calls,
                                        mlflow_store.chain_run(chain_id)[0])
    (small, a, calls_a, chain_a), (large, b, calls_b, chain_b) = seen[3], seen[6]

    # Same selection curves, same decisions, same training, same Optuna objective (chain/end_pass_at_1).
    assert [r.pass_at_1 for r in a] == [r.pass_at_1 for r in b]
    assert [r.successes for r in a] == [r.successes for r in b]
    assert decisions(a) == decisions(b)
    for ra, rb in zip(a, b):
        assert (mlflow_store.metric_history(ra.run_id, K.TRAIN_REWARD_MEAN)
                == mlflow_store.metric_history(rb.run_id, K.TRAIN_REWARD_MEAN))
    assert chain_a.data.metrics[K.CHAIN_END] == chain_b.data.metrics[K.CHAIN_END]
    # ... while the report figures differ in what they measured.
    assert [r.metrics[K.REPORT_TRIALS["end"]] for r in a] == [3.0] * 2
    assert [r.metrics[K.REPORT_TRIALS["end"]] for r in b] == [12.0] * 2

    # Only report evaluations grade report-split tasks, and they grade nothing of the selection split.
    for config, calls in ((small, calls_a), (large, calls_b)):
        report_ids = {t.task_id for t in report_split(config)}
        rl_ids = {t.task_id for t in split_tasks(config)[0]}
        selection_ids = {t.task_id for t in split_tasks(config)[1]}
        assert not report_ids & (rl_ids | selection_ids)
        touching = [c for c in calls if c & report_ids]
        # (evaluation grades rows as they finish, so one evaluation may be several calls)
        assert touching and all(c <= report_ids for c in touching) and set().union(*touching) == report_ids
        assert all(not c & report_ids for c in calls if c & selection_ids)


def test_report_figures_are_logged_once_reused_and_filled_in_alike(mlflow_store, grader_pool, tiny_base,
                                                                    monkeypatch):
    from selfregress import chain as chain_module
    from selfregress.report import Chain, fill_in

    config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "seed": 6, "rl_tasks": 8})
    chain_id = run_chain(config, mlflow_store, grader_pool, tiny_base, log=lambda m: None)
    records = campaign_records(mlflow_store, chain_id)
    for r in records:
        steps = report_steps(r)
        assert steps == {"start": 0, "peak": r.pass_at_1.index(max(r.pass_at_1)), "end": r.last_step}
        assert r.metrics[K.REPORT_PEAK_STEP] == steps["peak"]
        for point in K.REPORT_POINTS:
            assert r.metrics[K.REPORT_PASS_AT_1[point]] == pytest.approx(
                r.metrics[K.REPORT_SUCCESSES[point]] / r.metrics[K.REPORT_TRIALS[point]])
            assert r.metrics[K.RLSET_TRIALS[point]] == 6.0       # min(report_tasks, rl_tasks) x 1 sample
    # Naive: campaign 1 starts where campaign 0 ended, and that checkpoint was measured once.
    assert records[1].metrics[K.REPORT_PASS_AT_1["start"]] == records[0].metrics[K.REPORT_PASS_AT_1["end"]]
    chain = mlflow_store.chain_run(chain_id)[0]
    assert chain.data.metrics[K.CHAIN_REPORT_END] == records[-1].metrics[K.REPORT_PASS_AT_1["end"]]

    # A second evaluator (a resumed chain, or `report`) grades nothing for campaigns already logged.
    graded = GradeLog(grader_pool)
    again = ReportEvaluator(config, mlflow_store, graded)
    assert [again.campaign(r) for r in records] == records and graded.calls == []

    # An old chain, logged before report figures existed (simulated: the chain's evaluator does
    # nothing), gets them from `report`'s lazy path: the same numbers the chain would have logged.
    # (a context of its own: monkeypatch.undo() would also undo the store fixture's environment)
    with monkeypatch.context() as patch:
        patch.setattr(chain_module.ReportEvaluator, "campaign", lambda self, record, in_memory=None: record)
        old_id = run_chain(config, mlflow_store, grader_pool, tiny_base, log=lambda m: None)
    old_run = mlflow_store.chain_run(old_id)[0]
    old = Chain(old_run.info.run_id, old_id, "naive", 6, dict(old_run.data.params), 0.0, 0.0, 0.0,
                records=campaign_records(mlflow_store, old_id))
    assert not any(K.REPORT_PEAK_STEP in r.metrics for r in old.records)
    fill_in(mlflow_store, [old], grader_pool, log=lambda m: None)
    report_keys = [k for k in records[0].metrics if k.startswith(("report/", "rlset/"))]
    assert len(report_keys) == 19
    assert [{k: r.metrics[k] for k in report_keys} for r in old.records] == [
        {k: r.metrics[k] for k in report_keys} for r in records]
    assert mlflow_store.chain_run(old_id)[0].data.metrics[K.CHAIN_REPORT_END] == chain.data.metrics[K.CHAIN_REPORT_END]
