"""`tune`'s chain_params and search strings: what they parse to, and the one-line errors."""

from __future__ import annotations

import json

import pytest

from selfregress.config import parse
from selfregress.errors import UserError
from selfregress.search_space import Dimension, check_space, parse_chain_params, parse_search
from selfregress.tune import TuneConfig


def test_search_parses_float_int_log_and_categorical_dimensions():
    dims = parse_search("lr=1e-4:1e-3:log, es_slack=0:5, baseline=none|mean, batch_size=4|8")
    assert dims == (Dimension("lr", "float", 1e-4, 1e-3, log=True), Dimension("es_slack", "int", 0, 5),
                    Dimension("baseline", "categorical", choices=("none", "mean")),
                    Dimension("batch_size", "categorical", choices=(4, 8)))
    assert [d.describe() for d in dims] == ["lr=0.0001:0.001:log", "es_slack=0:5", "baseline=none|mean",
                                            "batch_size=4|8"]
    assert dims[1].ends() == (0, 5) and all(isinstance(v, int) for v in dims[1].ends())


def test_chain_params_are_coerced_and_a_params_file_is_under_them(tmp_path):
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps({"condition": "es", "batch_size": 8, "lr": 2e-4}))
    fixed = parse_chain_params("batch_size=4, group_size=2", str(path))
    assert fixed == {"batch_size": 4, "lr": 2e-4, "group_size": 2}   # the file's condition is tune's


@pytest.mark.parametrize("search, message", [
    ("foo=1:2", "unknown chain parameter 'foo'"),
    ("baseline=0:1", "'baseline' is not numeric, so it takes choices, not a range: baseline=none|mean|ema"),
    ("lr=1e-3:1e-4", "needs low < high"),
    ("lr=0:1e-3:log", "a log range needs low > 0"),
    ("batch_size=1.5:4", "the bounds of 'batch_size' must be ints"),
    ("lr=a:b", "the bounds of 'lr' must be floats"),
    ("es_slack=0:5:cube", "must be low:high, low:high:log or a|b|c"),
    ("lr", "'lr' must be name=value"),
    ("seed=0:4", "'seed' is set by tune for each chain: use tune's own 'seeds' parameter"),
    ("lr=1e-4:1e-3,lr=1e-3:1e-2", "'lr' is given twice"),
    ("baseline=none|none", "needs at least two distinct choices"),
])
def test_bad_search_is_one_line_naming_the_parameter(search, message):
    with pytest.raises(UserError) as e:
        parse_search(search)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_end_of_a_range_must_be_a_valid_chain():
    with pytest.raises(UserError, match=r"reaches lr=0.0, which a chain refuses"):
        check_space({}, parse_search("lr=0:1e-3"), "es")
    with pytest.raises(UserError, match=r"reaches baseline=bad"):
        check_space({}, parse_search("baseline=none|bad"), "es")
    with pytest.raises(UserError, match=r"reaches group_size=1.*needs group_size >= 2"):
        check_space({}, parse_search("group_size=1:4"), "grpo_es")
    with pytest.raises(UserError, match="batch_size: both fixed"):
        check_space({"batch_size": 4}, parse_search("batch_size=2:8"), "es")
    check_space({"group_size": 2}, parse_search("lr=1e-4:1e-3:log,es_slack=0:5"), "es")


def test_tune_config_fixes_chain_params_and_keeps_its_own_budget_fields():
    config = parse(TuneConfig, {"chain_params": "batch_size=4,steps=3", "search": "lr=1e-4:1e-3:log",
                                "campaigns": 2})
    # steps comes from chain_params (tune's own is at its default); campaigns from tune (changed)
    assert config.fixed_params == {"batch_size": 4, "steps": 3, "model": "base", "campaigns": 2, "eval_tasks": 128}
    assert [d.name for d in config.dimensions] == ["lr"]
    assert config.name.startswith("selfregress-es-") and config.name != parse(TuneConfig, {}).name
    # no search: the controller's own thresholds, under the study name it always had
    assert [d.name for d in parse(TuneConfig, {"controller": "care"}).dimensions] == [
        "care_gate", "care_regress", "care_lr_decay", "care_forget"]
    assert parse(TuneConfig, {}).name == "selfregress-es"
