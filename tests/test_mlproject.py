"""Every MLproject parameter appears in its command and reaches the code.

MLflow silently drops a declared parameter that the command template does not mention, so
this test substitutes a distinctive value for each parameter through MLflow's own project
loader, parses the resulting command with our CLI, and checks the value arrived.
"""

import shlex
from pathlib import Path

import pytest
from mlflow.projects._project_spec import load_project

from selfregress.cli import COMMANDS, build_parser
from selfregress.config import from_args

ROOT = Path(__file__).resolve().parents[1]
PROJECT = load_project(str(ROOT))


@pytest.mark.parametrize("name", sorted(PROJECT._entry_points))
def test_every_parameter_is_in_the_command(name):
    entry = PROJECT.get_entry_point(name)
    for param in entry.parameters:
        assert "{" + param + "}" in entry.command, f"{name}: '{param}' is declared but not in the command"


def _distinct_value(param, entry=""):
    """A value unlike the default, of the right type, that passes validation."""
    per_entry = {("report", "baseline"): "kl", ("report", "audit"): "true", ("report", "resamples"): "777",
                 ("report", "interval"): "t", ("report", "fill_missing"): "false"}
    if (entry, param.name) in per_entry:
        return per_entry[(entry, param.name)]
    special = {"band_low": "0.11", "band_high": "0.33", "register": "false", "model": "some/model",
               "tasks": "jsonl:tasks.jsonl", "split": "test", "top_p": "0.9", "temperature": "0.7",
               "lr": "0.0007", "hidden_size": "96", "heads": "6", "kv_heads": "3",
               "controller": "care", "seeds": "7,8", "storage": "sqlite:///o7.db", "out": "b7.json",
               "condition": "kl", "conditions": "kl,es",
               "search": "lr=1e-4:1e-3:log,es_slack=0:7", "chain_params": "batch_size=7,group_size=2",
               "baseline": "mean", "checkpoints": "peaks", "retention": "decisions", "resume": "abc123", "kl_estimator": "k3",
               "device": "cpu", "dtype": "bf16", "objective": "signature",
               "grad_checkpointing": "true"}
    if param.name in special:
        return special[param.name]
    return {"int": "7", "float": "0.25"}.get(param.type, "x7")


@pytest.mark.parametrize("name", sorted(n for n in PROJECT._entry_points if n in COMMANDS))
def test_every_parameter_reaches_the_config(name, tmp_path):
    entry = PROJECT.get_entry_point(name)
    values = {p: _distinct_value(spec, name) for p, spec in entry.parameters.items()}
    if name == "tune":
        values["condition"] = "care"
        (tmp_path / "fixed.json").write_text('{"eval_samples": 3}')   # tune reads its params file at once
        values["params_file"] = str(tmp_path / "fixed.json")
    argv = shlex.split(entry.compute_command(values, str(tmp_path)))
    assert argv[:3] == ["python", "-m", "selfregress"]
    if name == "main":
        values.pop("params_file", None)  # a file path: it reaches the parser, checked below
    args = build_parser().parse_args(argv[3:])
    config = from_args(COMMANDS[argv[3]][1], args)
    for param, raw in values.items():
        got = getattr(config, param)
        expected = type(got)(raw) if not isinstance(got, bool) else raw == "true"
        assert got == expected, f"{name}: '{param}' did not reach the config"


def test_grade_parameters_reach_the_grader_cli(tmp_path):
    from grader import cli as grader_cli

    entry = PROJECT.get_entry_point("grade")
    (tmp_path / "t.jsonl").write_text("")
    (tmp_path / "p.jsonl").write_text("")
    values = {"tasks": str(tmp_path / "t.jsonl"), "programs": str(tmp_path / "p.jsonl"),
              "out": "v7.jsonl", "workers": "7"}
    argv = shlex.split(entry.compute_command(values, str(tmp_path)))
    assert argv[:3] == ["python", "-m", "grader"]
    args = grader_cli.build_parser().parse_args(argv[3:])
    assert (str(args.tasks), str(args.programs), str(args.out), int(args.workers)) == (
        values["tasks"], values["programs"], "v7.jsonl", 7)


def test_params_file_reaches_main_and_explicit_options_win(tmp_path):
    import json

    entry = PROJECT.get_entry_point("main")
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"es_slack": 5, "care_gate": 0.7, "condition": "es"}))
    argv = shlex.split(entry.compute_command({"params_file": str(path), "care_gate": "0.6"}, str(tmp_path)))
    args = build_parser().parse_args(argv[3:])
    assert args.params_file == str(path)
    config = from_args(COMMANDS["main"][1], args, params_file=args.params_file)
    # the file beats MLproject defaults; an explicitly changed option beats the file
    assert (config.condition, config.es_slack, config.care_gate) == ("es", 5, 0.6)


# MLproject parameters that are CLI options rather than config fields.
CLI_ONLY = {("main", "params_file")}


@pytest.mark.parametrize("name", sorted(n for n in PROJECT._entry_points if n in COMMANDS))
def test_mlproject_defaults_are_the_config_defaults(name):
    """Defaults live in the config dataclasses; MLproject repeats them, and must agree, field by field."""
    import dataclasses

    entry = PROJECT.get_entry_point(name)
    fields = {f.name: f for f in dataclasses.fields(COMMANDS[name][1])}
    declared = {p for p in entry.parameters if (name, p) not in CLI_ONLY}
    assert declared == set(fields), f"{name}: MLproject and {COMMANDS[name][1].__name__} differ in their parameters"
    for param in sorted(declared):
        default, field = entry.parameters[param].default, fields[param].default
        if isinstance(field, bool):
            assert str(default).lower() == str(field).lower(), (name, param, default, field)
        elif isinstance(field, (int, float)):
            assert float(default) == float(field), (name, param, default, field)
        else:
            assert str(default) == str(field), (name, param, default, field)
