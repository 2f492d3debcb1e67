"""What a `tune` study's chains share, and what it searches: parsed once, checked against ChainConfig.

Two strings (MLproject parameters are strings) say it all:

- ``chain_params="batch_size=4,group_size=2"``: any `main` parameter, fixed for every chain of
  the study (on top of an optional JSON params file, e.g. a previous study's best parameters).
- ``search="lr=1e-4:1e-3:log,es_slack=0:5,baseline=none|mean"``: the search dimensions.
  ``name=low:high`` is a float range for a float parameter and an int range for an int one;
  ``:log`` samples it on a log scale; ``name=a|b|c`` is a categorical choice (any parameter).
  An empty ``search`` is the controller's own space (``CONTROLLER_SPACES``).

Every bad spelling is a one-line ``UserError`` that names the parameter: an unknown name, a
range on a categorical parameter, ``low >= high``, a non-numeric bound, a log range that
reaches 0, and any end of a range that ``ChainConfig`` itself would refuse (``lr=0:1e-3``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from selfregress.chain_config import ChainConfig
from selfregress.config import _coerce, parse, read_params_file, split_list
from selfregress.errors import UserError

# Set by `tune` itself, per chain (seed, condition), or meaningless for a study (resume).
NOT_CHAIN_PARAMS = {"seed": "seeds", "condition": "condition", "resume": None}


@dataclass(frozen=True)
class Dimension:
    """One search dimension: ``kind`` is int | float | categorical."""
    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Optuna's draw for this dimension."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def ends(self) -> tuple:
        """The values a draw can reach at the extremes (every choice, or both bounds)."""
        if self.kind == "categorical":
            return self.choices
        return (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)

    def describe(self) -> str:
        """The dimension as the user would write it in ``search``."""
        if self.kind == "categorical":
            return f"{self.name}={'|'.join(str(c) for c in self.choices)}"
        low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return f"{self.name}={low:g}:{high:g}{':log' if self.log else ''}"


# The controllers' own spaces (the default search): bounds keep every draw valid for ChainConfig.
CONTROLLER_SPACES: dict[str, tuple[Dimension, ...]] = {
    "es": (Dimension("es_slack", "int", 0, 10), Dimension("es_min_delta", "float", 0.0, 0.05),
           Dimension("es_patience", "int", 0, 10)),
    "care": (Dimension("care_gate", "float", 0.3, 0.95), Dimension("care_regress", "float", 0.5, 0.99),
             Dimension("care_lr_decay", "float", 0.1, 0.95), Dimension("care_forget", "float", 0.1, 0.95)),
}


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(ChainConfig)}


def _check_name(name: str, where: str) -> None:
    fields = _fields()
    if name not in fields:
        known = ", ".join(sorted(set(fields) - set(NOT_CHAIN_PARAMS)))
        raise UserError(f"{where}: unknown chain parameter '{name}' (known: {known})")
    if name in NOT_CHAIN_PARAMS:
        own = NOT_CHAIN_PARAMS[name]
        hint = f"use tune's own '{own}' parameter" if own else "it has no meaning for a study"
        raise UserError(f"{where}: '{name}' is set by tune for each chain: {hint}")


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for item in split_list(text):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UserError(f"{where}: '{item}' must be name=value, e.g. {where}=batch_size=4,group_size=2")
        pairs.append((name.strip(), value.strip()))
    return pairs


def parse_chain_params(text: str, params_file: str = "") -> dict[str, Any]:
    """The fixed chain parameters: the params file, then ``text`` on top; each value coerced and
    checked by parsing a ChainConfig with it."""
    values: dict[str, Any] = {}
    if params_file:
        for name, value in read_params_file(params_file).items():
            if name not in NOT_CHAIN_PARAMS:   # a `tune` best-params file carries its condition
                _check_name(name, f"params file {params_file}")
                values[name] = value
    hints = typing.get_type_hints(ChainConfig)
    for name, raw in _pairs(text, "chain_params"):
        _check_name(name, "chain_params")
        values[name] = _coerce("chain_params", name, hints[name], raw)
    parse(ChainConfig, values)   # a bad value fails here, naming the parameter
    return values


def parse_search(text: str) -> tuple[Dimension, ...]:
    """The search dimensions written in ``text`` (empty: none)."""
    hints = typing.get_type_hints(ChainConfig)
    dims = []
    for name, spec in _pairs(text, "search"):
        _check_name(name, "search")
        if name in {d.name for d in dims}:
            raise UserError(f"search: '{name}' is given twice")
        dims.append(_dimension(name, spec, hints[name]))
    return tuple(dims)


def _dimension(name: str, spec: str, tp: type) -> Dimension:
    if "|" in spec:
        choices = tuple(dict.fromkeys(_coerce("search", name, tp, c) for c in spec.split("|") if c.strip()))
        if len(choices) < 2:
            raise UserError(f"search: '{name}={spec}' needs at least two distinct choices, e.g. a|b")
        return Dimension(name, "categorical", choices=choices)
    if tp not in (int, float):
        allowed = _fields()[name].metadata.get("choices")
        example = "|".join(allowed) if allowed else "a|b"
        raise UserError(f"search: '{name}' is not numeric, so it takes choices, not a range: {name}={example}")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "linear")):
        raise UserError(f"search: '{name}={spec}' must be low:high, low:high:log or a|b|c")
    try:
        low, high = (tp(p) for p in parts[:2])
    except ValueError:
        raise UserError(f"search: the bounds of '{name}' must be {tp.__name__}s, got {spec!r}") from None
    log = len(parts) == 3 and parts[2] == "log"
    if not low < high:
        raise UserError(f"search: '{name}={spec}' needs low < high")
    if log and low <= 0:
        raise UserError(f"search: a log range needs low > 0, got '{name}={spec}'")
    return Dimension(name, tp.__name__, float(low), float(high), log)


def check_space(fixed: dict[str, Any], dims: tuple[Dimension, ...], condition: str) -> None:
    """Every end of every dimension, with the fixed parameters, must be a valid chain; and no
    parameter is both fixed and searched."""
    both = sorted(set(fixed) & {d.name for d in dims})
    if both:
        raise UserError(f"{', '.join(both)}: both fixed (chain_params/params_file) and searched; pick one")
    for dim in dims:
        for value in dim.ends():
            try:
                parse(ChainConfig, {**fixed, "condition": condition, dim.name: value})
            except UserError as e:
                raise UserError(f"search: '{dim.describe()}' reaches {dim.name}={value}, which a chain "
                                f"refuses ({e})") from None
