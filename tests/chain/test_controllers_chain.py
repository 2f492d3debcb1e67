"""Tiny es and care chains against a real store; every decision recomputed from MLflow alone."""

from __future__ import annotations

import pytest

from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.conditions import controller_for
from selfregress.config import parse
from selfregress.controllers import Decision, es_budget, peak_step
from selfregress.records import campaign_records

from .conftest import TINY_CHAIN


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def run(store, grader, model, **overrides):
    config = parse(ChainConfig, {**TINY_CHAIN, "campaigns": 3, "steps": 3, "model": model, **overrides})
    return config, campaign_records(store, run_chain(config, store, grader, model, log=lambda m: None))


def test_es_decisions_match_the_records(mlflow_store, grader_pool, tiny_base):
    config, records = run(mlflow_store, grader_pool, tiny_base, condition="es", seed=5, es_slack=1)
    for i, record in enumerate(records):
        logged = Decision.from_record(record)
        assert logged == controller_for(config).decide(records[:i + 1], config.steps)   # recomputed from MLflow alone
        peak = peak_step(record.pass_at_1, config.es_min_delta)
        assert logged.peak_step == peak
        assert logged.next_budget == es_budget(peak, config.steps, config.es_slack) == min(3, max(1, peak + 1))
        assert logged.next_start_model == f"models:/{record.checkpoints[peak]}"
        if i + 1 < len(records):
            following = records[i + 1]
            assert following.start_model == logged.next_start_model       # the peak's LoggedModel
            assert following.last_step == logged.next_budget               # ran exactly that budget
            assert following.checkpoints[0] == record.checkpoints[peak]


def test_care_decisions_match_the_records(mlflow_store, grader_pool, tiny_base):
    config, records = run(mlflow_store, grader_pool, tiny_base, condition="care", seed=6, lr=3e-3)
    for i, record in enumerate(records):
        logged = Decision.from_record(record)
        recomputed = controller_for(config).decide(records[:i + 1], config.steps)
        assert logged.decision in ("transfer", "revert")
        assert logged.next_start_model == recomputed.next_start_model
        assert logged.lr_multiplier == recomputed.lr_multiplier
        assert logged.p_transfer == pytest.approx(recomputed.p_transfer, abs=1e-12)
        assert logged.p_regress == pytest.approx(recomputed.p_regress, abs=1e-12)
        if i + 1 < len(records):
            following = records[i + 1]
            assert following.start_model == logged.next_start_model
            assert following.lr_multiplier == logged.lr_multiplier
            run_params = mlflow_store.get_run(following.run_id).data.params
            assert float(run_params["lr"]) == pytest.approx(config.lr * logged.lr_multiplier)


def test_es_patience_stops_early(mlflow_store, grader_pool, tiny_base):
    config, records = run(mlflow_store, grader_pool, tiny_base, condition="es", seed=7, steps=6,
                          es_patience=1, campaigns=1)
    curve = records[0].pass_at_1
    # it stopped at the first step that was one step past the peak, or ran the whole budget
    stops = [s for s in range(1, len(curve)) if s - peak_step(curve[:s + 1]) >= 1]
    assert records[0].last_step == (stops[0] if stops else 6)
