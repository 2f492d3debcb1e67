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
