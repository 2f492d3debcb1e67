"""The default base ships with the project and is registered on first use: no training on the
default path, and the same weights on every machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from selfregress import bootstrap
from selfregress.base_identity import pin, weights_digest
from selfregress.bootstrap import SHIPPED_BASE, ensure_base_model, shipped_base, start_model
from selfregress.errors import UserError
from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME

ALIAS = f"models:/{BASE_MODEL_NAME}@{BASE_ALIAS}"


def test_first_use_registers_the_shipped_weights_once(mlflow_store):
    folder, record = shipped_base()
    assert weights_digest(folder) == record["weights_digest"]
    said = []
    assert ensure_base_model(mlflow_store, said.append) == ALIAS
    assert ensure_base_model(mlflow_store, said.append) == ALIAS     # the second use finds it
    assert len(said) == 1 and "registered the shipped base" in said[0]
    assert pin(mlflow_store, ALIAS).digest == record["weights_digest"]   # what a chain's tags carry
    versions = mlflow_store.client.search_model_versions(f"name = '{BASE_MODEL_NAME}'")
    assert len(versions) == 1
    (run,) = mlflow_store.find_runs("tags.`selfregress.kind` = 'bootstrap'")
    assert run.info.run_name == "shipped-base" and run.info.status == "FINISHED"
    assert "sft/loss" not in run.data.metrics        # nothing was trained


def test_a_damaged_shipped_base_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "tiny"
    shutil.copytree(SHIPPED_BASE, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(bootstrap, "SHIPPED_BASE", copy)
    with pytest.raises(UserError, match="restore it with git checkout"):
        shipped_base()


def test_the_wheel_carries_the_shipped_base(tmp_path):
    root = SHIPPED_BASE.parents[3]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("selfregress-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("model.safetensors", "config.json", "tokenizer.json", "SHIPPED.json"):
        for base in ("tiny", "small"):
            assert f"selfregress/base/{base}/{name}" in names


def test_the_small_base_ships_and_registers_under_its_own_alias(mlflow_store):
    folder, record = shipped_base("small")
    assert record["name"] == "small" and weights_digest(folder) == record["weights_digest"]
    said = []
    uri = start_model(mlflow_store, "small", said.append)
    assert uri == f"models:/{BASE_MODEL_NAME}@small"
    assert start_model(mlflow_store, "small", said.append) == uri        # the second use finds it
    assert len(said) == 1 and "@small" in said[0]
    assert pin(mlflow_store, uri).digest == record["weights_digest"]
    assert mlflow_store.registered_uri(BASE_MODEL_NAME, BASE_ALIAS) is None   # @base is left alone
    tiny = start_model(mlflow_store, "tiny", said.append)
    assert pin(mlflow_store, tiny).digest == shipped_base()[1]["weights_digest"] != record["weights_digest"]


def _files_of(store, alias):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    version = store.client.get_model_version_by_alias(BASE_MODEL_NAME, alias)
    location = store.client.get_logged_model(version.source.removeprefix("models:/")).artifact_location
    return get_artifact_repository(location)


@pytest.mark.parametrize("model, alias", [("small", "small"), ("base", BASE_ALIAS)])
def test_a_store_unpacked_without_its_shipped_weights_gets_them_back(mlflow_store, model, alias):
    """studies/archive.py --bases unshipped leaves a shipped base's files out of a study's
    archive; on another machine the registered version has no files until they are restored."""
    uri = start_model(mlflow_store, model, print)
    digest = pin(mlflow_store, uri).digest
    _files_of(mlflow_store, alias).delete_artifacts()
    assert not _files_of(mlflow_store, alias).list_artifacts()
    said = []
    assert start_model(mlflow_store, model, said.append) == uri
    assert len(said) == 1 and "restored the files" in said[0]
    assert {f.path for f in _files_of(mlflow_store, alias).list_artifacts()} >= {"model.safetensors", "config.json"}
    assert pin(mlflow_store, uri).digest == digest
    said.clear()
    start_model(mlflow_store, model, said.append)                      # nothing more to restore
    assert said == []


def test_a_missing_base_that_did_not_ship_is_refused_in_one_line(mlflow_store):
    uri = start_model(mlflow_store, "small", print)
    version = mlflow_store.client.get_model_version_by_alias(BASE_MODEL_NAME, "small")
    mlflow_store.client.set_model_version_tag(BASE_MODEL_NAME, version.version, "weights_digest", "0" * 64)
    _files_of(mlflow_store, "small").delete_artifacts()
    with pytest.raises(UserError, match="no base that ships with this code has its weights sha256 000000000000"):
        start_model(mlflow_store, "small", print)
    assert uri == f"models:/{BASE_MODEL_NAME}@small"
