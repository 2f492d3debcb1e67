"""Config parsing: unknown keys and bad values fail with the key's name."""

import json

import pytest

from selfregress.bootstrap import BootstrapConfig
from selfregress.cli import EvaluateConfig
from selfregress.config import parse, read_params_file
from selfregress.errors import UserError


def test_strings_are_coerced_to_field_types():
    config = parse(BootstrapConfig, {"seed": "3", "lr": "1e-3", "register": "false"})
    assert (config.seed, config.lr, config.register) == (3, 1e-3, False)


def test_unknown_key_names_the_key():
    with pytest.raises(UserError, match="unknown parameter 'sed'"):
        parse(BootstrapConfig, {"sed": "1"})


def test_bad_value_names_the_key():
    with pytest.raises(UserError, match="'eval_samples' must be int"):
        parse(EvaluateConfig, {"eval_samples": "four"})


def test_choices_are_enforced():
    with pytest.raises(UserError, match="'split' must be one of"):
        parse(EvaluateConfig, {"split": "train"})


@pytest.mark.parametrize("values, message", [
    ({"band_low": "0.5", "band_high": "0.2"}, "band"),
    ({"eval_every": "0"}, "eval_every"),
    ({"seed": "-1"}, "seed"),
])
def test_bootstrap_validation(values, message):
    with pytest.raises(UserError, match=message):
        parse(BootstrapConfig, values)


def test_params_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"seed": 4}))
    assert read_params_file(str(path)) == {"seed": 4}
    path.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        read_params_file(str(path))
    with pytest.raises(UserError, match="does not exist"):
        read_params_file(str(tmp_path / "missing.json"))


def test_default_threads_reads_omp_num_threads_then_the_cores(monkeypatch):
    import os

    from selfregress.cli import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
    assert default_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert default_threads() == 4
