"""Each condition at a tiny budget, against a real sqlite store, real grader and a real model.

Asserts that the parameters changed and that every expected metric and checkpoint is in MLflow.
"""

from __future__ import annotations

import pytest
import torch

from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.records import campaign_records
from selfregress.config import parse
from selfregress.policy import load_policy

from .conftest import TINY_CHAIN

TRAIN_KEYS = [K.TRAIN_REWARD_MEAN, K.TRAIN_ENTROPY, K.TRAIN_LOSS,
              K.TRAIN_GRAD_NORM, K.TRAIN_RESPONSE_LENGTH, K.TRAIN_DISTINCT_RATIO]


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def run_tiny(store, grader, model, **overrides) -> str:
    config = parse(ChainConfig, {**TINY_CHAIN, "model": model, **overrides})
    return run_chain(config, store, grader, model, log=lambda m: None)


def weights(uri):
    return torch.cat([p.detach().flatten() for p in load_policy(uri).model.parameters()])


@pytest.mark.parametrize("condition", ["naive", "kl", "ewc", "grpo"])
def test_condition_logs_everything(condition, mlflow_store, grader_pool, tiny_base):
    chain_id = run_tiny(mlflow_store, grader_pool, tiny_base, condition=condition, seed=1)

    chain = mlflow_store.find_runs(f"tags.chain_id = '{chain_id}' and tags.`selfregress.kind` = 'chain'")
    assert len(chain) == 1 and chain[0].info.status == "FINISHED"
    chain = chain[0]
    assert {k: chain.data.tags[k] for k in ("condition", "seed", "chain_id")} == {
        "condition": condition, "seed": "1", "chain_id": chain_id}
    assert chain.data.params["steps"] == "2" and chain.data.params["condition"] == condition

    records = campaign_records(mlflow_store, chain_id)
    assert [r.index for r in records] == [0, 1]
    for record in records:
        run = mlflow_store.get_run(record.run_id)
        assert run.data.tags["mlflow.parentRunId"] == chain.info.run_id
        assert run.data.tags["controller/decision"] == "continue"
        assert record.trials == [24, 24, 24]                       # 12 tasks x 2 samples, steps 0..2
        assert sorted(record.checkpoints) == [0, 1, 2]
        for key in TRAIN_KEYS:
            assert sorted(mlflow_store.metric_history(record.run_id, key)) == [1, 2], key
        # the start policy is run (and its KL logged) only where a penalty reads it
        kl = mlflow_store.metric_history(record.run_id, K.TRAIN_KL_TO_START)
        assert sorted(kl) == ([1, 2] if condition == "kl" else []), kl
        if condition == "kl":   # step 1 samples the start policy itself: KL 0 up to float error
            assert abs(kl[1]) < 1e-4 and kl[2] > 0
        # the update really moved the policy
        assert not torch.equal(weights(f"models:/{record.checkpoints[0]}"),
                               weights(f"models:/{record.checkpoints[2]}"))
    # the second campaign starts from the first one's last checkpoint, read back from MLflow
    assert records[1].checkpoints[0] == records[0].checkpoints[2]

    curve = mlflow_store.client.get_metric_history(chain.info.run_id, K.PASS_AT_1)
    assert sorted(m.step for m in curve) == list(range(6))           # 2 campaigns x 3 points, none twice
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == records[0].pass_at_1 + records[1].pass_at_1
    summary = chain.data.metrics
    assert summary[K.CHAIN_END] == records[1].pass_at_1[-1]
    assert summary[K.CHAIN_PEAK] == max(records[0].pass_at_1 + records[1].pass_at_1)


def test_same_seed_same_curves(mlflow_store, grader_pool, tiny_base):
    first = campaign_records(mlflow_store, run_tiny(mlflow_store, grader_pool, tiny_base, seed=3))
    second = campaign_records(mlflow_store, run_tiny(mlflow_store, grader_pool, tiny_base, seed=3))
    assert [r.pass_at_1 for r in first] == [r.pass_at_1 for r in second]
    assert [r.successes for r in first] == [r.successes for r in second]


def test_checkpoints_none_keeps_only_campaign_ends(mlflow_store, grader_pool, tiny_base):
    records = campaign_records(mlflow_store, run_tiny(mlflow_store, grader_pool, tiny_base, checkpoints="none"))
    assert sorted(records[0].checkpoints) == [0, 2]      # step 0 links the start, step 2 is the end


def test_chain_logs_its_splits_as_datasets(mlflow_store, grader_pool, tiny_base):
    """The chain run's dataset inputs: one per split, with its context and the digest that the
    config hash holds (records.split_digests); a changed split is a different configuration."""
    from selfregress.chain_config import ChainConfig, config_hash
    from selfregress.config import parse
    from selfregress.records import split_digests

    chain_id = run_tiny(mlflow_store, grader_pool, tiny_base, condition="naive", seed=3)
    found = mlflow_store.find_runs(f"tags.chain_id = '{chain_id}' and tags.`selfregress.kind` = 'chain'")
    chain = mlflow_store.get_run(found[0].info.run_id)
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
              for i in chain.inputs.dataset_inputs}
    config = parse(ChainConfig, {k: v for k, v in chain.data.params.items() if k in ChainConfig.__dataclass_fields__})
    digests = split_digests(config)
    assert sorted(inputs) == ["report", "rl", "selection"]
    assert {c: d.digest for c, d in inputs.items()} == digests
    assert {c: d.name for c, d in inputs.items()} == {c: f"synthetic/{c}" for c in digests}
    assert chain.data.tags["selfregress.config_hash"] == config_hash(
        config, base_digest=chain.data.tags["selfregress.base_digest"], splits=digests)
    smaller = parse(ChainConfig, {**vars(config), "eval_tasks": config.eval_tasks - 1})
    assert split_digests(smaller)["selection"] != digests["selection"]
