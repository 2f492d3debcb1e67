"""How a chain splits its task source, and what promote gets as held out: pure, on a user JSONL."""

import pytest

from selfregress.chain_config import ChainConfig
from selfregress.records import held_out_tasks, split_tasks
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
    small = ChainConfig(tasks=source, eval_tasks=10, rl_tasks=8)
    large = ChainConfig(tasks=source, eval_tasks=10, rl_tasks=20)
    used = set()
    for config in (small, large):
        rl, evaluation = split_tasks(config)
        assert (len(rl), len(evaluation)) == (config.rl_tasks, config.eval_tasks)
        used |= set(ids(rl)) | set(ids(evaluation))
    test, where = held_out_tasks([small, large], 100)
    assert len(test) == 40 - 30 and not used & set(ids(test))     # 30 = the larger chain's eval + rl
    assert where == f"{source} shuffled[30:40]"
    assert ids(held_out_tasks([small], 4)[0]) == ids(held_out_tasks([small, small], 4)[0])
    assert len(set(ids(held_out_tasks([small], 100)[0])) & set(ids(split_tasks(large)[0]))) > 0  # hence the max


def test_synthetic_chains_get_the_synthetic_test_split():
    test, where = held_out_tasks([ChainConfig(), ChainConfig(rl_tasks=64)], 16)
    assert ids(test) == ids(synthetic_splits(seed=0).test[:16]) and where == "synthetic test[:16]"


@pytest.mark.parametrize("configs, message", [
    (lambda s: [ChainConfig(tasks=s, eval_tasks=10, rl_tasks=30)], "none is held out for a test"),
    (lambda s: [ChainConfig(tasks=s, eval_tasks=10, rl_tasks=8), ChainConfig()], "different task sources"),
])
def test_no_honest_test_split_is_one_clear_error(source, configs, message):
    with pytest.raises(UserError, match=message):
        held_out_tasks(configs(source), 16)
