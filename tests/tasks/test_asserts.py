"""Assert -> call-based test conversion (MBPP, HumanEval): what converts and what does not."""

import ast

import pytest

from selfregress.tasks.asserts import parse_assert, parse_asserts


def one(line, callee=None):
    return parse_assert(ast.parse(line).body[0], callee)


@pytest.mark.parametrize("line, fn, args, out, tol", [
    ("assert f(1, [2, 3]) == (4, 5)", "f", "[1, [2, 3]]", "[4, 5]", None),          # tuple -> list
    ("assert 7 == f(0, [])", "f", "[0, []]", "7", None),                              # reversed
    ("assert f('a') is True", "f", '["a"]', "true", None),
    ("assert f(2) == None", "f", "[2]", "null", None),
    ("assert f('x') == {'k': (1, 2)}", "f", '["x"]', '{"k": [1, 2]}', None),
    ("assert math.isclose(g(2.0), 3.14, rel_tol=0.001)", "g", "[2.0]", "3.14", 0.001),
    ("assert abs(g(1.5) - 0.5) < 1e-6", "g", "[1.5]", "0.5", 1e-6),
    ("assert abs(g(1.5) - 2.0 / 3.0) <= 1e-6", "g", "[1.5]", "0.6666666666666666", 1e-6),
    ("assert g([3, 5]) == (3 + 5, -3 * 5), 'message'", "g", "[[3, 5]]", "[8, -15]", None),
    ("assert h('ab' * 2) == 4", "h", '["abab"]', "4", None),
])
def test_converts(line, fn, args, out, tol):
    test = one(line)
    assert (test.fn_name, test.input, test.output, test.tol) == (fn, args, out, tol)


@pytest.mark.parametrize("line", [
    "assert f(x) == 3",                     # a variable
    "assert f(1) == y",
    "assert f(1, k=2) == 3",                # keyword arguments
    "assert f(1)",                          # truthiness only
    "assert f(1) is 0",                     # `is` with a non-singleton
    "assert f({1, 2}) == 3",                # sets are not JSON
    "assert f(1) == {1: 2}",                # int keys would turn into strings
    "assert f(1) == float('nan')",
    "assert set(f(1)) == set([1])",
    "assert f('a' * 10**9) == 1",           # no power, no huge values
    "assert obj.f(1) == 2",
    "assert f(1) != 2",
    "x = f(1)",
])
def test_does_not_convert(line):
    assert one(line) is None


def test_callee_is_pinned_and_blocks_count_what_was_dropped():
    assert one("assert candidate(1) == 2", "candidate").fn_name == "candidate"
    assert one("assert helper(1) == 2", "candidate") is None
    block = "assert f(1) == 1\nfor i in range(3):\n    assert f(i) == i\nassert f(2) == 2\n"
    tests, dropped = parse_asserts(block)
    assert [t.input for t in tests] == ["[1]", "[2]"] and dropped == 1
    assert parse_asserts("assert f(1 ==") == ([], 1)
