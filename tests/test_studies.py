"""studies/archive.py on a real sqlite store: what travels to the next machine, and what not."""

import importlib.util
import tarfile
from pathlib import Path

import pytest

from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME, KIND_TAG

_spec = importlib.util.spec_from_file_location(
    "studies_archive", Path(__file__).parents[1] / "studies" / "archive.py")
studies_archive = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(studies_archive)


def test_archive_keeps_finished_chains_and_the_base_and_drops_unfinished_ones(mlflow_store, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    with mlflow_store.run("bootstrap", "bootstrap") as run:
        base = run.log_checkpoint(weights, "base", 0)
    mlflow_store.register(base, BASE_MODEL_NAME, BASE_ALIAS)
    with mlflow_store.run("done", "chain", tags={"chain_id": "done"}) as chain:
        checkpoint = chain.log_checkpoint(weights, "checkpoint", 1)
        with mlflow_store.run("done-0", "campaign", tags={"chain_id": "done"}, parent=chain):
            pass
    client, experiment = mlflow_store.client, mlflow_store.experiment_id
    cut = client.create_run(experiment, tags={KIND_TAG: "chain", "chain_id": "cut"}).info.run_id
    with mlflow_store.run("cut-0", "campaign", tags={"chain_id": "cut", "mlflow.parentRunId": cut}):
        pass

    out = tmp_path / "study.tar.gz"
    summary = studies_archive.archive(tmp_path / "mlflow.db", out)
    assert "1 finished chains, 1 unfinished dropped" in summary

    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="data")
    base_dir = Path(client.get_logged_model(base).artifact_location).relative_to(tmp_path)
    assert "mlflow.db" in names and f"{base_dir}/config.json" in names
    assert not any(checkpoint in name for name in names), "chain checkpoints stay behind"

    from mlflow import MlflowClient

    copy = MlflowClient(f"sqlite:///{unpacked / 'mlflow.db'}")
    kept = copy.search_runs([experiment])
    assert sorted(r.data.tags.get("chain_id", "-") for r in kept) == ["-", "done", "done"]
    assert all(r.info.status == "FINISHED" for r in kept)
    assert copy.get_model_version_by_alias(BASE_MODEL_NAME, BASE_ALIAS).source == f"models:/{base}"
    assert client.get_run(cut).info.status == "RUNNING", "the store itself is left as it was"


def test_archive_packs_an_optuna_storage_beside_the_store(mlflow_store, tmp_path):
    import sqlite3

    with mlflow_store.run("done", "chain", tags={"chain_id": "done"}):
        pass
    optuna_db = tmp_path / "optuna.db"
    with sqlite3.connect(optuna_db) as db:
        db.execute("create table trials (number integer, state text)")
        db.execute("insert into trials values (0, 'COMPLETE'), (1, 'RUNNING')")
    out = tmp_path / "study.tar.gz"
    studies_archive.archive(tmp_path / "mlflow.db", out, [optuna_db])
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    with sqlite3.connect(tmp_path / "unpacked" / "optuna.db") as db:
        assert db.execute("select number, state from trials order by number").fetchall() == \
            [(0, "COMPLETE"), (1, "RUNNING")]


@pytest.mark.parametrize("bases, packed", [("all", {"imported", "small"}), ("unshipped", {"imported"}),
                                           ("none", set())])
def test_archive_packs_the_bases_it_is_asked_for(mlflow_store, tmp_path, bases, packed):
    """A shipped base is in the repository, and an imported one can be 540 MB: --bases says which
    registered bases' weights travel (a shipped one left out comes back on first use:
    tests/test_shipped_base.py)."""
    from selfregress.bootstrap import start_model

    start_model(mlflow_store, "small", print)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    with mlflow_store.run("import", "import") as run:
        imported = run.log_checkpoint(weights, "imported", 0)
    mlflow_store.register(imported, BASE_MODEL_NAME, "imported")
    client = mlflow_store.client
    folders = {alias: Path(client.get_logged_model(client.get_model_version_by_alias(
        BASE_MODEL_NAME, alias).source.removeprefix("models:/")).artifact_location).relative_to(tmp_path)
        for alias in ("small", "imported")}

    out = tmp_path / "study.tar.gz"
    summary = studies_archive.archive(tmp_path / "mlflow.db", out, bases=bases)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert {alias for alias, folder in folders.items() if f"{folder}/config.json" in names} == packed
    assert "mlflow.db" in names and ("none (--bases none)" in summary) == (bases == "none")
