"""Output comparison: pure functions, no I/O.

Two rules, both stated so that a reward hack cannot hide in them:
- stdin/stdout: whitespace tokens, line by line. Spacing inside or at the end of a line and blank
  lines at the end of the output do not matter. Every other line is compared, so a missing
  line, an extra non-blank line, or a prefix of the expected output is a mismatch (the classic
  `zip(actual, expected)` bug passes all three).
- call-based: the decoded JSON values must be equal, structurally; bool never equals a number.
With `float_tol`, two numeric tokens/values match when |a - b| <= tol * max(1, |a|, |b|)
(absolute or relative error within tol). Without it, tokens must be identical strings.
"""
from __future__ import annotations

import json
import math
import re

# Plain decimal numbers only: float() would also accept "1_0", "nan", "infinity", " 5".
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _lines(text: str) -> list[list[str]]:
    lines = [line.split() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()  # blank lines at the end do not count
    return lines


def _close(a: float, b: float, tol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _tokens_match(actual: str, expected: str, float_tol: float | None) -> bool:
    if actual == expected:
        return True
    if float_tol is None or not (_NUMBER.fullmatch(actual) and _NUMBER.fullmatch(expected)):
        return False
    return _close(float(actual), float(expected), float_tol)


def stdout_matches(actual: str, expected: str, float_tol: float | None = None) -> bool:
    """True iff `actual` program output matches `expected` under the token rule above."""
    if actual == expected:
        return True  # the common case, without tokenising
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False
    for got_line, want_line in zip(got, want):  # same lengths, checked just above
        if len(got_line) != len(want_line):
            return False
        if float_tol is None:
            if got_line != want_line:
                return False
        elif not all(_tokens_match(a, e, float_tol) for a, e in zip(got_line, want_line)):
            return False
    return True


def values_match(actual: object, expected: object, float_tol: float | None = None) -> bool:
    """Structural equality of decoded JSON values (call-based tasks)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        if actual == expected:
            return True
        return float_tol is not None and _close(float(actual), float(expected), float_tol)
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(values_match(a, e, float_tol) for a, e in zip(actual, expected)))
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and actual.keys() == expected.keys()
                and all(values_match(actual[k], expected[k], float_tol) for k in expected))
    return type(actual) is type(expected) and actual == expected


def json_matches(actual_json: bytes | str, expected: object, float_tol: float | None) -> bool:
    """Decode a program's returned JSON (untrusted) and compare it with the expected value."""
    try:
        actual = json.loads(actual_json)
    except (ValueError, RecursionError):
        return False
    try:
        return values_match(actual, expected, float_tol)
    except RecursionError:
        return False
