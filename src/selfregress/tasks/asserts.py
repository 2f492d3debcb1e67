"""Turn ``assert f(args) == expected`` lines (MBPP, HumanEval) into call-based tests.

Only asserts of these shapes convert, with literal arguments and a literal expected value
(constant arithmetic such as ``3 * 5`` or ``2.0 / 3.0`` counts as literal):
    assert f(a, b) == v            (also ``v == f(a, b)``, and ``is`` with True/False/None)
    assert math.isclose(f(a), v, rel_tol=t)   /   abs_tol=t      -> float tolerance t
    assert abs(f(a) - v) < t                  (or <=)            -> float tolerance t
Anything else (keyword arguments, computed values, loops, helper functions, random inputs,
``assert f(x)`` truthiness, sets) returns None: the caller drops that check and says so.
Values must survive JSON (tuples become lists; sets, bytes, non-string dict keys, NaN do not).
"""

from __future__ import annotations

import ast
import json
import math
import operator
from dataclasses import dataclass

_SINGLETONS = (True, False, None)


@dataclass(frozen=True)
class CallTest:
    fn_name: str
    input: str            # JSON list of arguments
    output: str           # JSON of the expected return value
    tol: float | None     # numeric tolerance, when the assert had one


def parse_assert(node: ast.stmt, callee: str | None = None) -> CallTest | None:
    """A CallTest from one assert statement, or None. ``callee`` pins the called name
    (HumanEval's ``candidate``); otherwise any plain function name is accepted."""
    if not isinstance(node, ast.Assert):
        return None
    test = node.test
    tol = None
    if isinstance(test, ast.Call) and _dotted(test.func) in ("math.isclose", "isclose"):
        # math.isclose(f(x), v, rel_tol=t): the tolerance is the larger of rel_tol/abs_tol.
        if len(test.args) != 2:
            return None
        call, expected = test.args
        tols = [_literal(k.value) for k in test.keywords if k.arg in ("rel_tol", "abs_tol")]
        if len(tols) != len(test.keywords) or not all(_is_number(t) for t in tols):
            return None
        tol = float(max(tols, default=1e-9))  # isclose's default rel_tol
    elif (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Lt, ast.LtE))
          and isinstance(test.left, ast.Call) and _dotted(test.left.func) in ("abs", "math.fabs", "fabs")
          and len(test.left.args) == 1 and isinstance(test.left.args[0], ast.BinOp)
          and isinstance(test.left.args[0].op, ast.Sub)):
        # abs(f(x) - v) < t
        call, expected = test.left.args[0].left, test.left.args[0].right
        tol = _literal(test.comparators[0])
        if not _is_number(tol):
            return None
        tol = float(tol)
    elif isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
        call, expected = test.left, test.comparators[0]
        if not isinstance(call, ast.Call):
            call, expected = expected, call
        if isinstance(test.ops[0], ast.Is) and not any(_literal(expected) is s for s in _SINGLETONS):
            return None  # `is` only means == for the singletons
    else:
        return None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords):
        return None
    if callee is not None and call.func.id != callee:
        return None
    args = [_literal(a) for a in call.args]
    value = _literal(expected)
    if any(a is _FAIL for a in args) or value is _FAIL:
        return None
    try:
        args_json = json.dumps([_jsonable(a) for a in args], allow_nan=False)
        value_json = json.dumps(_jsonable(value), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return CallTest(call.func.id, args_json, value_json, tol)


def parse_asserts(source: str, callee: str | None = None) -> tuple[list[CallTest], int]:
    """(converted tests, number of statements that did not convert) for a block of asserts."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return [], 1
    tests = [parse_assert(node, callee) for node in body]
    return [t for t in tests if t], sum(t is None for t in tests)


_FAIL = object()


def _literal(node: ast.AST):
    """A literal, or constant arithmetic on literals (HumanEval writes ``(3 + 5, 3 * 5)``)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return _fold(node)
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        return _FAIL


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def _fold(node: ast.AST):
    """Evaluate numbers, strings and containers under + - * / // % and unary minus. Never
    calls anything, and bounds sizes, so `"a" * 10**9` in a test file cannot hurt."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_fold(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _fold(node.operand)
        if not _is_number(value):
            raise TypeError("unary minus of a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(node.op, ast.Mult) and any(isinstance(v, (str, list, tuple)) for v in (left, right)):
            count = right if isinstance(left, (str, list, tuple)) else left
            if not isinstance(count, int) or count > 10_000:
                raise ValueError("repetition too large")
        result = _BINOPS[type(node.op)](left, right)
        if isinstance(result, (int, str, list, tuple)) and not isinstance(result, bool) and (
                len(result) if not isinstance(result, int) else result.bit_length()) > 100_000:
            raise ValueError("value too large")
        return result
    raise ValueError(f"not a constant expression: {type(node).__name__}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return ""


def _jsonable(value):
    """Tuples -> lists; refuses what JSON would silently change (sets, int keys, NaN...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite float")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    raise TypeError(f"not JSON-safe: {type(value).__name__}")
