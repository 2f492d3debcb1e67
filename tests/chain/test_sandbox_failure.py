"""A step whose programs the sandbox cannot grade fails loudly: no training on a false 0.

The failure is real (no fake): a Grader whose SandboxConfig asks for an open-file limit the
kernel refuses, so every program's child fails its set-up and gets sandbox_error, on the retry
too (a program that does not compile never forks, so it still gets syntax_error). tests/test_grading.py
checks a transient failure that the retry resolves.
"""

from __future__ import annotations

import re

import pytest
import torch

from grader import Grader, SandboxConfig
from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.config import parse
from selfregress.grading import SandboxFailure
from selfregress.records import campaign_records, split_tasks

from .conftest import TINY_CHAIN

BROKEN = SandboxConfig(nofile=1 << 30)


def test_a_training_step_fails_before_its_update(tiny_base):
    from selfregress.policy import load_policy
    from selfregress.step import StepTimes, train_step
    from selfregress.updates import make_update

    config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base})
    rl_tasks, _ = split_tasks(config)
    policy = load_policy(tiny_base)
    before = [p.detach().clone() for p in policy.model.parameters()]
    update = make_update("reinforce", kl_beta=0.0, kl_estimator="k1", max_new_tokens=64, ewc_lambda=0.0,
                         baseline="none", temperature=1.0, top_p=1.0)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-2)
    with Grader(workers=2, config=BROKEN) as broken, pytest.raises(SandboxFailure) as failure:
        train_step(policy, None, optimizer, update, rl_tasks[:4], broken, group_size=2, temperature=1.0,
                   top_p=1.0, max_new_tokens=64, seed=0, times=StepTimes())
    # every program that compiles (most of the tiny base's) was graded twice and failed twice
    found = re.match(r"training step: the grader's sandbox failed on (\d) of 8 programs even on a retry "
                     r"\(\1 sandbox_error verdicts on the first try: ValueError: not allowed to raise", str(failure.value))
    assert found and int(found[1]) >= 4, str(failure.value)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))


def test_a_chain_fails_loudly_then_resumes(mlflow_store, tiny_base):
    config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "campaigns": 1, "steps": 1})
    with Grader(workers=2, config=BROKEN) as broken, pytest.raises(SandboxFailure) as failure:
        run_chain(config, mlflow_store, broken, tiny_base, log=lambda m: None)
    found = re.match(r"evaluation: the grader's sandbox failed on (\d+) of 24 programs even on a retry "
                     r"\(\1 sandbox_error verdicts on the first try: ValueError: not allowed to raise", str(failure.value))
    assert found and int(found[1]) >= 12 and "\n" not in str(failure.value), str(failure.value)
    (chain,) = mlflow_store.find_runs(f"tags.`{K.KIND}` = 'chain'")
    (campaign,) = mlflow_store.find_runs(f"tags.`{K.KIND}` = 'campaign'")
    assert chain.info.status == campaign.info.status == "FAILED"
    assert chain.data.params["steps"] == "1"                     # what was logged is kept
    assert K.PASS_AT_1 not in campaign.data.metrics               # no false 0 was logged
    # With a working sandbox the same chain resumes, and every step logs its count: 0.
    with Grader(workers=2) as working:
        chain_id = run_chain(parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "campaigns": 1, "steps": 1,
                                                 "resume": "true"}),
                             mlflow_store, working, tiny_base, log=lambda m: None)
    (record,) = campaign_records(mlflow_store, chain_id)
    assert mlflow_store.metric_history(record.run_id, K.SANDBOX_ERRORS) == {0: 0.0, 1: 0.0}
