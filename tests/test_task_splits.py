"""How a chain splits its task source, and what promote gets as held out: pure, on a user JSONL."""

import pytest

from selfregress.chain_config import ChainConfig
from selfregress.records import held_out_tasks, report_split, split_tasks
from selfregress.errors import UserError
from selfregress.tasks import synthetic_splits, write_jsonl


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "mine.jsonl"
    write_jsonl(synthetic_splits(seed=0).rl[:40], path)
    return str(path)


def ids(tasks):
    return [t.task_id for t in tasks]


def test_held_out_tasks_are_what_no_chain_trained_or_evaluated_on(source):
    small = ChainConfig(tasks=source, eval_tasks=10, rl_tasks=8, report_tasks=4)
    large = ChainConfig(tasks=source, eval_tasks=10, rl_tasks=16, report_tasks=4)
    used = set()
    for config in (small, large):
        rl, evaluation = split_tasks(config)
        report = report_split(config)
        assert (len(rl), len(evaluation), len(report)) == (config.rl_tasks, config.eval_tasks, config.report_tasks)
        assert len(set(ids(rl)) | set(ids(evaluation)) | set(ids(report))) == len(rl) + len(evaluation) + len(report)
        used |= set(ids(rl)) | set(ids(evaluation)) | set(ids(report))
    test, where = held_out_tasks([small, large], 100)
    assert len(test) == 40 - 30 and not used & set(ids(test))     # 30 = the larger chain's eval + rl + report
    assert where == f"{source} shuffled[30:40]"
    assert ids(held_out_tasks([small], 4)[0]) == ids(held_out_tasks([small, small], 4)[0])
    assert len(set(ids(held_out_tasks([small], 100)[0])) & set(ids(split_tasks(large)[0]))) > 0  # hence the max


def test_synthetic_splits_have_one_job_each():
    """RL, selection (eval[:eval_tasks]: every decision, and bootstrap's SFT stop), report (the next
    report_tasks of the eval stream: no decision) and promote's test split: pairwise disjoint."""
    from selfregress.bootstrap import BootstrapConfig

    config = ChainConfig()
    rl, selection = split_tasks(config)
    report = report_split(config)
    test, _ = held_out_tasks([config], 256)
    assert (len(selection), len(report)) == (128, config.report_tasks)
    assert ids(report) == ids(synthetic_splits(seed=0, n_eval=128 + config.report_tasks).eval[128:])
    groups = [set(ids(g)) for g in (rl, selection, report, test)]
    assert sum(map(len, groups)) == len(set().union(*groups))
    sft_stop = synthetic_splits(seed=BootstrapConfig().seed).eval[:BootstrapConfig().eval_tasks]
    assert set(ids(sft_stop)) <= groups[1]          # the SFT band stop reads the selection split only
    assert ids(report_split(ChainConfig(report_tasks=8))) == ids(report[:8])   # a prefix-stable stream


def test_a_source_too_small_for_its_report_split_is_one_clear_error(source):
    with pytest.raises(UserError, match="too few for report_tasks=30"):
        report_split(ChainConfig(tasks=source, eval_tasks=10, rl_tasks=8, report_tasks=30))


def test_synthetic_chains_get_the_synthetic_test_split():
    test, where = held_out_tasks([ChainConfig(), ChainConfig(rl_tasks=64)], 16)
    assert ids(test) == ids(synthetic_splits(seed=0).test[:16]) and where == "synthetic test[:16]"


@pytest.mark.parametrize("configs, message", [
    (lambda s: [ChainConfig(tasks=s, eval_tasks=10, rl_tasks=26, report_tasks=4)], "none is held out for a test"),
    (lambda s: [ChainConfig(tasks=s, eval_tasks=10, rl_tasks=8), ChainConfig()], "different task sources"),
])
def test_no_honest_test_split_is_one_clear_error(source, configs, message):
    with pytest.raises(UserError, match=message):
        held_out_tasks(configs(source), 16)
