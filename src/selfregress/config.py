"""Frozen, typed configuration: parsed once at the edge (CLI, entry point), then passed down.

Every field carries a one-line help text (``metadata["help"]``). ``parse`` turns a mapping of
strings (argparse, an MLproject command, a params file) into a config, failing on an unknown
key or a bad value with a message that names the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from selfregress.errors import UserError

C = TypeVar("C")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text (and allowed values, for strings)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) for ``int``, ``str | None`` and the like."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _coerce(cls_name: str, name: str, tp: Any, raw: Any) -> Any:
    base, optional = _base_type(tp)
    if not isinstance(raw, str):
        if raw is None and optional:
            return None
        if base is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, base):
            return raw
        raw = str(raw)
    text = raw.strip()
    if optional and text.lower() in ("", "none", "null"):
        return None
    try:
        if base is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        return base(text)
    except ValueError:
        raise UserError(f"{cls_name}: '{name}' must be {base.__name__}, got {raw!r}") from None


def parse(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from ``values``; unknown keys and bad values fail with the key's name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UserError(f"unknown parameter '{key}' (known: {', '.join(sorted(fields))})")
        value = _coerce(cls.__name__, name, hints[name], raw)
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"'{name}' must be one of {', '.join(choices)}, got {value!r}")
        kwargs[name] = value
    config = cls(**kwargs)
    check = getattr(config, "validate", None)
    if check:
        check()
    return config


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--name`` option per field (``--name-with-dashes`` accepted too, unlisted); values stay
    strings until ``parse``. The help lists a string option's valid values and every default."""
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        values = f"; one of: {', '.join(choices)}" if choices else ""
        parser.add_argument(f"--{f.name}", dest=f.name, default=argparse.SUPPRESS, metavar=f.name.upper(),
                            help=f"{f.metadata.get('help', '')} (default: {f.default}{values})")
        if "_" in f.name:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)


def from_args(cls: type[C], args: argparse.Namespace, params_file: str | None = None) -> C:
    """Parse CLI options, on top of an optional JSON params file (e.g. written by ``tune``).

    An MLproject command passes every parameter, defaults included, so an option overrides the
    file only when its value differs from the field's default.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    options = {k: v for k, v in vars(args).items() if k in fields}
    if not params_file:
        return parse(cls, options)
    values: dict[str, Any] = dict(read_params_file(params_file))
    for key, raw in options.items():
        if key not in values or _coerce(cls.__name__, key, hints[key], raw) != fields[key].default:
            values[key] = raw
    return parse(cls, values)


def require_at_least_one(config: Any, names: tuple[str, ...]) -> None:
    """Fail on the first of ``names`` whose value is below 1, naming it."""
    for name in names:
        if getattr(config, name) < 1:
            raise UserError(f"'{name}' must be at least 1, got {getattr(config, name)}")


def split_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: a comma-separated parameter (MLproject params are strings)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: str, name: str) -> list[int]:
    """A comma-separated list of integers, or a one-line error that names the parameter."""
    try:
        return [int(item) for item in split_list(text)]
    except ValueError:
        raise UserError(f"'{name}' must be comma-separated integers, got {text!r}") from None


def read_params_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file {path} does not exist: pass a JSON file written by `tune`")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"params file {path} is not valid JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"params file {path} must hold a JSON object of parameter: value")
    return data


def as_params(config: Any) -> dict[str, Any]:
    """Every resolved field, for logging as run params."""
    return dataclasses.asdict(config)


def same_param(logged: str, value: object) -> bool:
    """Whether a logged param string and a resolved value agree ("1e-5" == 1e-05)."""
    text = str(value)
    if logged == text:
        return True
    try:
        return float(logged) == float(text)
    except ValueError:
        return logged.lower() == text.lower()
