"""``campaign_tasks``: each campaign trains on its own draw from the RL set (issue #16's lever for
a recurring rise: a campaign that has solved its tasks has nothing left to learn from them).

The draw is checked on its own (seeded by seed and campaign, not by the condition) and in a
real chain: every RL batch of campaign c, read back from its ``samples/train.jsonl``, comes from
campaign c's draw, and the RL-set figures of a campaign's start are measured on that campaign's
draw rather than copied from the previous campaign's end.
"""

from __future__ import annotations

import json

import pytest
from mlflow.artifacts import download_artifacts

from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig, config_hash
from selfregress.config import parse
from selfregress.errors import UserError
from selfregress.records import campaign_records, campaign_rl_tasks, split_tasks

from .conftest import TINY_CHAIN


def draw(**settings) -> dict[int, list[str]]:
    config = parse(ChainConfig, {"rl_tasks": 32, **settings})
    pool = split_tasks(config)[0]
    return {c: [t.task_id for t in campaign_rl_tasks(config, pool, c)] for c in range(4)}


def test_the_draw_is_seeded_by_seed_and_campaign_only():
    pool = [t.task_id for t in split_tasks(parse(ChainConfig, {"rl_tasks": 32}))[0]]
    assert draw() == {c: pool for c in range(4)}                     # 0: the whole set, every campaign
    drawn = draw(campaign_tasks=8, seed=3)
    for tasks in drawn.values():
        assert len(set(tasks)) == 8 and set(tasks) <= set(pool)
        assert tasks == [t for t in pool if t in tasks]               # in the set's order
    assert len({tuple(t) for t in drawn.values()}) == 4               # a new draw per campaign
    assert drawn == draw(campaign_tasks=8, seed=3, condition="es")    # paired across conditions
    assert drawn != draw(campaign_tasks=8, seed=4)


def test_it_is_hashed_only_when_set_and_bounded_by_the_rl_set():
    base = parse(ChainConfig, {})
    assert config_hash(base) == config_hash(parse(ChainConfig, {"campaign_tasks": 0}))
    assert config_hash(base) != config_hash(parse(ChainConfig, {"campaign_tasks": 16}))
    with pytest.raises(UserError, match="campaign_tasks"):
        parse(ChainConfig, {"rl_tasks": 8, "campaign_tasks": 9}).validate()
    few = parse(ChainConfig, {"rl_tasks": 8, "campaign_tasks": 4})     # a source that holds only 3
    with pytest.raises(UserError, match="leaves only 3 RL tasks"):
        campaign_rl_tasks(few, split_tasks(few)[0][:3], 0)


def test_each_campaign_trains_and_is_measured_on_its_own_draw(mlflow_store, tiny_base):
    from grader import Grader

    config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "seed": 7, "campaigns": 3,
                                 "rl_tasks": 12, "campaign_tasks": 3, "report_tasks": 3})
    with Grader(workers=2) as grader:
        chain_id = run_chain(config, mlflow_store, grader, tiny_base, log=lambda m: None)
    records = campaign_records(mlflow_store, chain_id)
    pool = split_tasks(config)[0]
    draws = [{t.task_id for t in campaign_rl_tasks(config, pool, r.index)} for r in records]
    assert len({frozenset(d) for d in draws}) == 3
    for record, tasks in zip(records, draws):
        path = download_artifacts(run_id=record.run_id, artifact_path="samples/train.jsonl")
        trained = {json.loads(line)["task_id"] for line in open(path, encoding="utf-8")}
        assert trained <= tasks and trained                           # only this campaign's tasks
        for point in K.REPORT_POINTS:                                 # 3 tasks x 1 sample
            assert record.metrics[K.RLSET_TRIALS[point]] == 3.0
    # Campaign c + 1 starts from campaign c's end: its report figure is that checkpoint's (one
    # split, measured once); its RL-set figure is measured again, on the new draw.
    for before, after in zip(records, records[1:]):
        assert after.checkpoints[0] == before.checkpoints[before.last_step]
        assert after.metrics[K.REPORT_PASS_AT_1["start"]] == before.metrics[K.REPORT_PASS_AT_1["end"]]
    from selfregress.report_eval import ReportEvaluator

    evaluator = ReportEvaluator(config, mlflow_store, grader=None)
    for record in records:
        evaluator.remember(record)
    # the RL-set cache is keyed by draw: campaign c + 1's start (campaign c's end) has two entries
    for before, after in zip(records, records[1:]):
        start = after.checkpoints[0]
        assert {("rlset", start, before.index), ("rlset", start, after.index)} <= set(evaluator.cache)
        assert ("report", start, -1) in evaluator.cache
