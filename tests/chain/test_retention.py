"""retention=decisions against a real store: which checkpoints keep their files, what is tagged
pruned, the bytes logged against the bytes on disk, ES and promote on a pruned chain, a resume,
and deleting through a tracking server with proxied artifacts (``mlflow-artifacts:``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig, config_hash
from selfregress.config import parse
from selfregress.controllers import Decision, peak_step
from selfregress.records import campaign_records
from selfregress.retention import folder_bytes, retain

from .conftest import TINY_CHAIN
from .test_tracking_server import mlflow_server  # noqa: F401 - the fixture

CHEAP = {**TINY_CHAIN, "campaigns": 2, "steps": 3}


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


def run_tiny(store, grader, model, **overrides) -> tuple[ChainConfig, str]:
    config = parse(ChainConfig, {**CHEAP, "model": model, **overrides})
    return config, run_chain(config, store, grader, model, log=lambda m: None)


def files_of(store, model_id: str) -> Path:
    """A LoggedModel's artifact folder on disk (the sqlite store's artifacts are local)."""
    return Path(store.client.get_logged_model(model_id).artifact_location)


def on_disk(store, model_id: str) -> int:
    folder = files_of(store, model_id)
    return folder_bytes(folder) if folder.is_dir() else 0


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_decisions_keeps_start_peak_end_and_next_start(lora_rank, mlflow_store, grader_pool, tiny_base):
    if lora_rank:
        pytest.importorskip("peft", reason="peft is not installed: pip install -c constraints.txt peft")
    weights = "adapter_model.safetensors" if lora_rank else "model.safetensors"
    config, chain_id = run_tiny(mlflow_store, grader_pool, tiny_base, seed=2, retention="decisions",
                                lora_rank=lora_rank)
    records = campaign_records(mlflow_store, chain_id)
    assert len(records) == 2
    chain_kept = 0
    for record in records:
        every = mlflow_store.checkpoints(record.run_id)            # step -> model id, pruned ones too
        assert sorted(every) == [0, 1, 2, 3]
        peak = peak_step(record.pass_at_1, config.es_min_delta)
        expected = {0, peak, 3}                                     # naive's next start is the end
        assert set(record.checkpoints) == expected
        assert Decision.from_record(record).next_start_model == f"models:/{every[3]}"
        sizes = mlflow_store.metric_history(record.run_id, K.CHECKPOINT_BYTES)
        assert sorted(sizes) == ([0, 1, 2, 3] if record.index == 0 else [1, 2, 3])   # c1's start is c0's end
        for step, model_id in every.items():
            tags = mlflow_store.client.get_logged_model(model_id).tags
            if step in expected:
                assert K.PRUNED not in tags and (files_of(mlflow_store, model_id) / weights).is_file()
                if step in sizes:
                    assert sizes[step] == on_disk(mlflow_store, model_id)   # the bytes logged are the bytes stored
            else:
                assert tags[K.PRUNED] == "true" and not files_of(mlflow_store, model_id).exists()
                # the metrics of a pruned step stay
                assert mlflow_store.metric_history(record.run_id, K.PASS_AT_1)[step] == record.pass_at_1[step]
        pruned = sorted(set(every) - expected)
        assert record.tags[K.PRUNED_STEPS] == ",".join(map(str, pruned))
        kept = sum(on_disk(mlflow_store, every[s]) for s in expected if s in sizes)
        assert record.metrics[K.BYTES_KEPT] == kept
        assert record.metrics[K.BYTES_WRITTEN] == sum(sizes.values()) == kept + sum(sizes[s] for s in pruned)
        chain_kept += kept
    chain = mlflow_store.chain_run(chain_id)[0]
    assert chain.data.metrics[K.BYTES_KEPT] == chain_kept
    assert chain.data.metrics[K.BYTES_WRITTEN] == sum(r.metrics[K.BYTES_WRITTEN] for r in records)
    assert chain.data.metrics[K.BYTES_WRITTEN] > chain_kept

    # A kill between deleting and tagging: retention runs again, and deleting what is gone is a no-op.
    first = records[0]
    cut = replace(first, checkpoints=mlflow_store.checkpoints(first.run_id),
                  metrics={k: v for k, v in first.metrics.items() if k != K.BYTES_KEPT},
                  tags={k: v for k, v in first.tags.items() if k != K.PRUNED_STEPS})
    again = retain(config, mlflow_store, cut)
    assert again.checkpoints == first.checkpoints and again.metrics[K.BYTES_KEPT] == first.metrics[K.BYTES_KEPT]
    assert retain(config, mlflow_store, first) is first        # done once: never pruned twice

    # A resumed chain (here: one already finished) prunes nothing again and fails on nothing.
    resumed = replace(config, resume=chain_id)
    assert run_chain(resumed, mlflow_store, grader_pool, tiny_base, log=lambda m: None) == chain_id
    assert [r.checkpoints for r in campaign_records(mlflow_store, chain_id)] == [r.checkpoints for r in records]
    assert len(mlflow_store.metric_history(records[0].run_id, K.BYTES_KEPT)) == 1


def test_all_is_unchanged_and_decisions_changes_no_number(mlflow_store, grader_pool, tiny_base):
    config, chain_id = run_tiny(mlflow_store, grader_pool, tiny_base, seed=2)
    records = campaign_records(mlflow_store, chain_id)
    for record in records:
        assert sorted(record.checkpoints) == [0, 1, 2, 3] and K.PRUNED_STEPS not in record.tags
        assert all((files_of(mlflow_store, m) / "model.safetensors").is_file() for m in record.checkpoints.values())
        assert record.metrics[K.BYTES_KEPT] == record.metrics[K.BYTES_WRITTEN] > 0
    chain = mlflow_store.chain_run(chain_id)[0].data.metrics
    assert chain[K.BYTES_KEPT] == chain[K.BYTES_WRITTEN]
    # retention deletes files after the numbers are made: same curves, same config hash
    _, pruned_id = run_tiny(mlflow_store, grader_pool, tiny_base, seed=2, retention="decisions")
    assert [r.pass_at_1 for r in campaign_records(mlflow_store, pruned_id)] == [r.pass_at_1 for r in records]
    assert config_hash(config) == config_hash(replace(config, retention="decisions"))


def test_es_restarts_from_its_kept_peak_and_promote_picks_kept_checkpoints(mlflow_store, grader_pool, tiny_base):
    from selfregress.promote import PromoteConfig, candidates, promote

    config, chain_id = run_tiny(mlflow_store, grader_pool, tiny_base, condition="es", seed=5, es_slack=1,
                                retention="decisions")
    first, second = campaign_records(mlflow_store, chain_id)
    peak = peak_step(first.pass_at_1, config.es_min_delta)
    assert second.start_model == f"models:/{first.checkpoints[peak]}" == Decision.from_record(first).next_start_model
    assert (files_of(mlflow_store, first.checkpoints[peak]) / "model.safetensors").is_file()
    pruned = {m for r in (first, second) for s, m in mlflow_store.checkpoints(r.run_id).items()
              if s not in r.checkpoints}
    assert pruned, "a 3-step campaign keeps at most 3 of its 4 checkpoints"

    pool = candidates(mlflow_store, mlflow_store.chain_run(chain_id))
    assert pool and not {c.model_id for c in pool} & pruned
    result = promote(PromoteConfig(top_k=len(pool), test_tasks=4, test_samples=1), mlflow_store, grader_pool,
                     log=lambda m: None)
    assert result["model_id"] not in pruned


@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_delete_weights_local_and_proxied(where, request, tmp_path):
    """Store.delete_weights on a local artifact folder and through a server's ``mlflow-artifacts:``."""
    request.getfixturevalue("mlflow_store" if where == "sqlite" else "mlflow_server")
    from selfregress.tracking import connect

    store = connect("retention")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"x" * 1000)
    with store.run("c", "campaign") as run:
        model_id = run.log_checkpoint(folder, name="c0-s1", step=1)
    location = store.client.get_logged_model(model_id).artifact_location
    assert location.startswith("mlflow-artifacts:") == (where == "server")
    stored = (tmp_path / "artifacts" / location.split(":", 1)[1].lstrip("/")) if where == "server" else Path(location)
    assert (stored / "weights.bin").stat().st_size == 1000
    store.delete_weights(model_id)
    assert not (stored / "weights.bin").exists()
    assert store.client.get_logged_model(model_id).tags[K.PRUNED] == "true"
    store.delete_weights(model_id)                       # again: nothing left to delete, no error
    assert store.checkpoints(run.run_id) == {1: model_id}   # the LoggedModel and its link stay
