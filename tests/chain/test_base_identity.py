"""Chains name their base by immutable identity: a moved alias never changes what a chain resumes from.

Each chain here is started with a sandbox that cannot grade (SandboxConfig with an open-file
limit the kernel refuses: a real failure, see test_sandbox_failure.py), so it fails at its first
evaluation and is left unfinished for a resume, without training a step.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from grader import Grader, SandboxConfig
from selfregress import metric_keys as K
from selfregress.base_identity import weights_digest
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig, config_hash
from selfregress.config import parse
from selfregress.errors import UserError
from selfregress.grading import SandboxFailure
from selfregress.records import campaign_records, split_digests
from selfregress.tracking import BASE_ALIAS, BASE_MODEL_NAME

from .conftest import TINY_CHAIN

BROKEN = SandboxConfig(nofile=1 << 30)
ALIAS = f"models:/{BASE_MODEL_NAME}@{BASE_ALIAS}"


def other_weights(tiny_base, folder) -> str:
    """A copy of the tiny base with different weights, saved to ``folder``."""
    from selfregress.policy import load_policy
    policy = load_policy(tiny_base)
    with torch.no_grad():
        next(policy.model.parameters()).add_(0.01)
    policy.save(folder)
    return str(folder)


def register(store, folder) -> str:
    with store.run("bootstrap", "bootstrap") as run:
        model_id = run.log_checkpoint(folder, name="base", step=0)
    store.register(model_id, BASE_MODEL_NAME, BASE_ALIAS)
    return model_id


def start_and_fail(store, base: str, **overrides) -> ChainConfig:
    config = parse(ChainConfig, {**TINY_CHAIN, "campaigns": 1, "steps": 1, **overrides})
    with Grader(workers=2, config=BROKEN) as broken, pytest.raises(SandboxFailure):
        run_chain(config, store, broken, base, log=lambda m: None)
    return config


def test_a_moved_alias_does_not_move_a_resumed_chain(mlflow_store, tiny_base, tmp_path):
    first = register(mlflow_store, tiny_base)
    config = start_and_fail(mlflow_store, ALIAS)
    (chain,) = mlflow_store.find_runs(f"tags.`{K.KIND}` = 'chain'")
    digest = weights_digest(tiny_base)
    assert chain.data.tags[K.BASE_MODEL] == chain.data.tags[K.MODEL] == f"models:/{first}"
    assert chain.data.tags[K.BASE_DIGEST] == digest
    splits = split_digests(config)
    assert chain.data.tags[K.CONFIG_HASH] == config_hash(config, base_digest=digest, splits=splits)
    assert config_hash(config, base_digest=digest, splits=splits) != config_hash(config, splits=splits)

    second = register(mlflow_store, other_weights(tiny_base, tmp_path / "other"))   # the alias moves
    assert second != first and weights_digest(tmp_path / "other") != digest
    with Grader(workers=2) as working:
        chain_id = run_chain(parse(ChainConfig, {**TINY_CHAIN, "campaigns": 1, "steps": 1, "resume": "true"}),
                             mlflow_store, working, ALIAS, log=lambda m: None)
    (record,) = campaign_records(mlflow_store, chain_id)
    assert record.tags[K.START_MODEL] == f"models:/{first}" and record.tags[K.START_MODEL_ID] == first


def test_a_resume_refuses_a_base_whose_weights_changed(mlflow_store, tiny_base, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    start_and_fail(mlflow_store, str(folder), model=str(folder))
    other = other_weights(tiny_base, tmp_path / "other")
    shutil.copyfile(f"{other}/model.safetensors", folder / "model.safetensors")   # edited in place
    with Grader(workers=2) as working, pytest.raises(UserError, match=r"resume: the base of chain \w+, .*base, "
                                                                      r"no longer has the weights it started from"):
        run_chain(parse(ChainConfig, {**TINY_CHAIN, "campaigns": 1, "steps": 1, "resume": "true",
                                      "model": str(folder)}), mlflow_store, working, str(folder), log=lambda m: None)
