"""The comparison rules, as pure functions."""
import pytest

from grader.compare import json_matches, stdout_matches, values_match


@pytest.mark.parametrize("actual", [
    "1 2 3\n4\n",          # identical
    "1 2 3   \n4\n",       # trailing spaces on a line
    "1 2 3\n4\n\n\n",      # blank lines at the end
    "1 2 3\n4",            # no final newline
    "1  2\t3\r\n4\r\n",    # any whitespace between tokens, CRLF
    "  1 2 3\n4\n  \n",    # leading spaces, a whitespace-only last line
])
def test_whitespace_that_does_not_matter(actual):
    assert stdout_matches(actual, "1 2 3\n4\n")


@pytest.mark.parametrize("actual", [
    "1 2 3\n",             # a missing line (a prefix of the expected output)
    "1 2\n4\n",            # a prefix of a line
    "",                    # nothing at all
    "1 2 3\n4\n5\n",       # an extra non-blank line
    "1 2 3\n\n4\n",        # a blank line in the middle
    "1 2 3 4\n",           # the right tokens on the wrong lines
    "1 2 3\n4 \n x\n",     # an extra token after trailing space
    "1 2 3\n04\n",         # tokens compare as strings
])
def test_mismatches(actual):
    assert not stdout_matches(actual, "1 2 3\n4\n")


def test_prefix_never_passes_even_with_trailing_whitespace():
    assert not stdout_matches("YES\n", "YES\nNO\n")
    assert not stdout_matches("YES\nNO\n", "YES\n")


def test_float_tolerance():
    expected = "0.333333\n2\n"
    assert stdout_matches("0.3333331\n2\n", expected, float_tol=1e-6)
    assert stdout_matches("0.33333333333\n2.0000000001\n", expected, float_tol=1e-6)
    assert not stdout_matches("0.3334\n2\n", expected, float_tol=1e-6)
    assert not stdout_matches("0.3333331\n2\n", expected)  # no tolerance: exact tokens
    assert stdout_matches("1000000.5\n", "1000000\n", float_tol=1e-6)  # relative
    assert stdout_matches("nan\n", "nan\n", float_tol=1e-6)  # identical tokens still match
    assert not stdout_matches("inf\n", "1e400\n", float_tol=1e-6)
    assert not stdout_matches("1_0\n", "10\n", float_tol=1e-6)  # float() would accept it
    assert not stdout_matches("abc\n", "abd\n", float_tol=1.0)


def test_values_match_structurally():
    assert values_match([1, [2, 3], {"a": "x"}], [1, [2, 3], {"a": "x"}])
    assert values_match(2, 2.0)
    assert not values_match(True, 1) and not values_match(1, True) and not values_match(0, False)
    assert not values_match([1, 2], [1, 2, 3]) and not values_match([1, 2, 3], [1, 2])
    assert not values_match({"a": 1}, {"a": 1, "b": 2})
    assert not values_match("1", 1) and not values_match(None, 0)
    assert values_match([0.1 + 0.2], [0.3], float_tol=1e-9)
    assert not values_match([0.1 + 0.2], [0.3])


def test_json_matches_untrusted_text():
    assert json_matches(b"[1, 2]", [1, 2], None)
    assert not json_matches(b"[1, 2", [1, 2], None)         # not JSON
    assert not json_matches(b"[" * 100000, [1], None)       # absurdly deep
    assert not json_matches(b"\xff\xfe", "x", None)         # not UTF-8
