"""The operations that synthetic problems are composed of.

An ``Op`` is one line of canonical code, a pure Python function with exactly the same
semantics (it computes the expected outputs; a test checks the code text against it), and
2-4 phrasings of its clause in the statement. A tiny model learns the phrase -> line
mapping compositionally, so every line follows one compact style and the constant ``{k}``
appears verbatim in both the phrase and the code.

A composition fills some of three slots, in slot order, then ends with a terminal op that
prints (its function returns the printed text). Ints: filter, map, then order/slice/prefix;
words: letter edits, rearrangement, then cut/case. With a fixed order each code line can
find its clause by its vocabulary ("multiples of", "modulo") instead of counting clauses.
In a throwaway probe (the tiny Qwen2 with the project's BPE tokenizer, SFT batch 32, lr 2e-3,
one seed, 96 eval tasks x 2 samples) held-out pass@1 at steps 200/300/400 was 0.07/0.16/0.31
with fixed slots and 0.06/0.17/0.28 with free order. That is no clear overall difference,
but tier 3 did better with fixed slots (0.17 vs 0.10 sampled, 0.41 vs 0.24 greedy at step 400).

Values are typed so compositions are valid: ``INTS`` (a list of ints, read as ``n`` then a
line of ``n`` numbers), ``WORD`` (a lowercase word) and ``UPPER`` (a word that may hold
capitals, after ``upper``: letter-specific terminals such as "count the vowels" are not
defined on it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

INTS, WORD, UPPER = "ints", "word", "upper"
N_SLOTS = 3
ANY_WORD = frozenset({WORD, UPPER})

K = tuple(range(2, 10))            # the usual constant: 2-9
K_SLICE = (1, 2, 3, 4)             # slice lengths: lists hold at most 8 numbers
K_DIV = tuple(range(3, 10))        # divisors: "multiples of 2" would be "even" again
ALPHABET = "abcdeilmnorstu"        # words use few letters, so letter constants occur often
VOWELS = "aeiou"
LETTER_PAIRS = tuple((a, b) for a in ALPHABET for b in ALPHABET if a != b)

HEADER_CODE = {INTS: "n = int(input())\na = list(map(int, input().split()))", WORD: "s = input()"}
HEADERS = {
    INTS: ("Read n, then a line of n integers.",
           "The input is n followed by a line with n integers.",
           "You are given n and then n integers on one line."),
    WORD: ("Read a lowercase word s.",
           "You are given a string s of lowercase letters.",
           "The input is one line: a lowercase word s."),
}


@dataclass(frozen=True)
class Op:
    name: str
    kind: str                      # filter, map, order, dedupe, prefix, slice, reduce, count,
                                   # predicate, string or print
    accepts: frozenset             # value types it applies to
    code: str                      # one line of canonical code; {k} is the constant
    phrasings: tuple[str, ...]     # statement clauses; {k} is the constant
    fn: Callable[[Any, Any], Any]  # (value, k) -> value, or the printed text for a terminal
    consts: tuple = (None,)        # the constants it may take
    output: str | None = None      # value type it yields (None: unchanged)
    terminal: bool = False         # prints the answer; ends a composition
    cost: int = 1                  # counts toward the tier; 0 for plainly printing the value
    binary: bool = False           # prints YES/NO
    slot: int = 0                  # transforms: 0, 1 or 2, their order in a composition

    def line(self, k) -> str:
        return self.code.format(k=k)


# Filters and maps take a whole-list function (not a per-element one): the generator runs
# them ~10^6 times at start-up, and a call per element would double its time.
def _filter(name, cond, fn, phrasings, consts=(None,)):
    return Op(name, "filter", frozenset({INTS}), f"a = [x for x in a if {cond}]", phrasings, fn, consts,
              slot=0)


def _map(name, expr, fn, phrasings, consts=(None,)):
    return Op(name, "map", frozenset({INTS}), f"a = [{expr} for x in a]", phrasings, fn, consts, slot=1)


def _ints(name, kind, code, fn, phrasings, consts=(None,)):
    return Op(name, kind, frozenset({INTS}), code, phrasings, fn, consts, slot=2)


def _text(name, slot, accepts, code, phrasings, fn, consts=(None,), output=None):
    return Op(name, "string", frozenset(accepts), code, phrasings, fn, consts, output, slot=slot)


def _print(name, kind, accepts, code, fn, phrasings, consts=(None,), cost=1, binary=False):
    return Op(name, kind, frozenset(accepts), code, phrasings, fn, consts, terminal=True,
              cost=cost, binary=binary)


def _yes(b: bool) -> str:
    return "YES" if b else "NO"


INT_OPS = (
    # slot 0: filters
    _filter("even", "x % 2 == 0", lambda a, k: [x for x in a if x % 2 == 0],
            ("keep only the even numbers", "remove the odd numbers", "discard every odd number")),
    _filter("odd", "x % 2 == 1", lambda a, k: [x for x in a if x % 2 == 1],
            ("keep only the odd numbers", "remove the even numbers", "discard every even number")),
    _filter("positive", "x > 0", lambda a, k: [x for x in a if x > 0],
            ("keep only the positive numbers", "remove the numbers that are zero or negative")),
    _filter("negative", "x < 0", lambda a, k: [x for x in a if x < 0],
            ("keep only the negative numbers", "remove the numbers that are zero or positive")),
    _filter("greater", "x > {k}", lambda a, k: [x for x in a if x > k],
            ("keep only the numbers greater than {k}", "remove every number that is at most {k}",
             "discard the numbers not above {k}"), K),
    _filter("less", "x < {k}", lambda a, k: [x for x in a if x < k],
            ("keep only the numbers less than {k}", "remove every number that is at least {k}",
             "discard the numbers not below {k}"), K),
    _filter("multiple", "x % {k} == 0", lambda a, k: [x for x in a if x % k == 0],
            ("keep only the multiples of {k}", "keep the numbers divisible by {k}"), K_DIV),
    _filter("not_multiple", "x % {k} != 0", lambda a, k: [x for x in a if x % k != 0],
            ("remove the multiples of {k}", "keep only the numbers not divisible by {k}"), K_DIV),
    # slot 1: maps
    _map("times", "x * {k}", lambda a, k: [x * k for x in a],
         ("multiply each number by {k}", "scale every number by {k}"), K),
    _map("plus", "x + {k}", lambda a, k: [x + k for x in a],
         ("add {k} to each number", "increase every number by {k}"), K),
    _map("minus", "x - {k}", lambda a, k: [x - k for x in a],
         ("subtract {k} from each number", "decrease every number by {k}"), K),
    _map("square", "x * x", lambda a, k: [x * x for x in a],
         ("square each number", "replace every number by its square")),
    _map("abs", "abs(x)", lambda a, k: [abs(x) for x in a],
         ("take the absolute value of each number", "drop the sign of every number")),
    _map("negate", "-x", lambda a, k: [-x for x in a],
         ("negate each number", "flip the sign of every number")),
    _map("mod", "x % {k}", lambda a, k: [x % k for x in a],
         ("replace each number by its remainder modulo {k}", "take every number modulo {k}"), K),
    # slot 2: order, duplicates, prefix sums, slices
    _ints("sort", "order", "a = sorted(a)", lambda a, k: sorted(a),
          ("sort the numbers in increasing order", "sort the list ascending")),
    _ints("sort_desc", "order", "a = sorted(a, reverse=True)", lambda a, k: sorted(a, reverse=True),
          ("sort the numbers in decreasing order", "sort the list from largest to smallest")),
    _ints("reverse", "order", "a = a[::-1]", lambda a, k: a[::-1],
          ("reverse the list", "reverse the order of the numbers")),
    _ints("dedupe", "dedupe", "a = list(dict.fromkeys(a))", lambda a, k: list(dict.fromkeys(a)),
          ("remove repeated numbers, keeping first occurrences",
           "drop duplicates, keeping the first copy of each number")),
    _ints("prefix", "prefix", "a = [sum(a[:i + 1]) for i in range(len(a))]",
          lambda a, k: [sum(a[:i + 1]) for i in range(len(a))],
          ("replace the list by its prefix sums",
           "replace each number by the sum of it and all numbers before it")),
    _ints("diffs", "prefix", "a = [y - x for x, y in zip(a, a[1:])]",
          lambda a, k: [y - x for x, y in zip(a, a[1:])],
          ("replace the list by the differences of neighbours (each number minus the one before)",
           "turn the list into its consecutive differences a[i+1] - a[i]")),
    _ints("take", "slice", "a = a[:{k}]", lambda a, k: a[:k],
          ("keep only the first {k} numbers", "cut the list to its first {k} elements"), K_SLICE),
    _ints("drop", "slice", "a = a[{k}:]", lambda a, k: a[k:],
          ("drop the first {k} numbers", "remove the first {k} elements"), K_SLICE),
    # terminals
    _print("print_list", "print", {INTS}, "print(*a)", lambda a, k: " ".join(map(str, a)),
           ("print the numbers separated by spaces", "print the resulting list on one line",
            "output the numbers on one line"), cost=0),
    _print("sum", "reduce", {INTS}, "print(sum(a))", lambda a, k: str(sum(a)),
           ("print their sum", "print the sum of the numbers", "output the total")),
    _print("count", "count", {INTS}, "print(len(a))", lambda a, k: str(len(a)),
           ("print how many numbers there are", "print the count of numbers")),
    _print("max", "reduce", {INTS}, "print(max(a, default=0))", lambda a, k: str(max(a, default=0)),
           ("print the largest number (0 if there is none)",
            "print the maximum, or 0 if the list is empty")),
    _print("min", "reduce", {INTS}, "print(min(a, default=0))", lambda a, k: str(min(a, default=0)),
           ("print the smallest number (0 if there is none)",
            "print the minimum, or 0 if the list is empty")),
    _print("distinct", "count", {INTS}, "print(len(set(a)))", lambda a, k: str(len(set(a))),
           ("print the number of distinct values", "print how many different numbers there are")),
    _print("count_k", "count", {INTS}, "print(a.count({k}))", lambda a, k: str(a.count(k)),
           ("print how many times {k} occurs", "print the number of elements equal to {k}"), K),
    _print("is_sorted", "predicate", {INTS}, "print('YES' if a == sorted(a) else 'NO')",
           lambda a, k: _yes(a == sorted(a)),
           ("print YES if the numbers are in non-decreasing order, otherwise NO",
            "print YES if the list never decreases, else NO"), binary=True),
)

WORD_OPS = (
    # slot 0: letters
    _text("s_novowel", 0, {WORD}, "s = ''.join(c for c in s if c not in 'aeiou')",
          ("remove all vowels (a, e, i, o, u)", "delete the vowels from s"),
          lambda s, k: "".join(c for c in s if c not in VOWELS)),
    _text("s_replace", 0, {WORD}, "s = s.replace('{k[0]}', '{k[1]}')",
          ("replace every '{k[0]}' with '{k[1]}'", "change each letter {k[0]} into {k[1]}"),
          lambda s, k: s.replace(k[0], k[1]), LETTER_PAIRS),
    _text("s_dedupe", 0, ANY_WORD, "s = ''.join(dict.fromkeys(s))",
          ("remove repeated letters, keeping first occurrences",
           "keep only the first occurrence of each character"),
          lambda s, k: "".join(dict.fromkeys(s))),
    # slot 1: rearrange
    _text("s_reverse", 1, ANY_WORD, "s = s[::-1]", ("reverse s", "write s backwards"),
          lambda s, k: s[::-1]),
    _text("s_sort", 1, ANY_WORD, "s = ''.join(sorted(s))",
          ("sort the characters of s", "arrange the letters in alphabetical order"),
          lambda s, k: "".join(sorted(s))),
    _text("s_rotate", 1, ANY_WORD, "s = s[{k}:] + s[:{k}]",
          ("move the first {k} characters to the end",
           "cut off the first {k} letters and append them at the end"),
          lambda s, k: s[k:] + s[:k], K_SLICE),
    _text("s_double", 1, ANY_WORD, "s = ''.join(c * 2 for c in s)",
          ("double every character", "write each character twice"),
          lambda s, k: "".join(c * 2 for c in s)),
    # slot 2: cut or change case
    _text("s_take", 2, ANY_WORD, "s = s[:{k}]",
          ("keep only the first {k} characters", "cut s to its first {k} letters"), lambda s, k: s[:k], K),
    _text("s_drop", 2, ANY_WORD, "s = s[{k}:]",
          ("drop the first {k} characters", "remove the first {k} letters"), lambda s, k: s[k:], K_SLICE),
    _text("s_upper", 2, {WORD}, "s = s.upper()",
          ("convert s to uppercase", "make every letter uppercase"), lambda s, k: s.upper(), output=UPPER),
    # terminals
    _print("s_print", "print", ANY_WORD, "print(s)", lambda s, k: s,
           ("print s", "print the result", "output the string"), cost=0),
    _print("s_len", "count", ANY_WORD, "print(len(s))", lambda s, k: str(len(s)),
           ("print its length", "print the number of characters")),
    _print("s_vowels", "count", {WORD}, "print(sum(c in 'aeiou' for c in s))",
           lambda s, k: str(sum(c in VOWELS for c in s)),
           ("print the number of vowels (a, e, i, o, u)", "count the vowels and print the count")),
    _print("s_count", "count", {WORD}, "print(s.count('{k}'))", lambda s, k: str(s.count(k)),
           ("print how many times '{k}' occurs", "count the letter {k} and print the count"),
           tuple(ALPHABET)),
    _print("s_palindrome", "predicate", ANY_WORD, "print('YES' if s == s[::-1] else 'NO')",
           lambda s, k: _yes(s == s[::-1]),
           ("print YES if s is a palindrome, otherwise NO",
            "print YES if s reads the same backwards, else NO"),
           binary=True),
    _print("s_distinct", "count", ANY_WORD, "print(len(set(s)))", lambda s, k: str(len(set(s))),
           ("print the number of distinct characters", "print how many different letters s has")),
)

OPS = {INTS: INT_OPS, WORD: WORD_OPS}           # by domain (the type a problem starts from)


# -- inputs --------------------------------------------------------------------------------
def render_input(domain: str, value) -> str:
    """The stdin text for a value; an empty list is "0" then an empty line, which the
    canonical two-line header still parses."""
    if domain == INTS:
        return f"{len(value)}\n{' '.join(map(str, value))}\n"
    return f"{value}\n"


VALUES = tuple(range(-9, 16))       # random list elements: a third negative, most below 10
# Letters of random words, from ALPHABET with vowels about 40%, so vowel ops and palindromes
# behave as on real words.
LETTERS = VOWELS * 4 + "".join(c for c in ALPHABET if c not in VOWELS) * 3


def _numbers(rng: random.Random, lo: int, hi: int) -> list[int]:
    return rng.choices(VALUES, k=rng.randint(lo, hi))


def _random_word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(LETTERS, k=rng.randint(lo, hi)))


def candidate_inputs(domain: str, rng: random.Random, consts: list, n_random: int = 3) -> list:
    """Edge cases first (empty, then a single element), then duplicates with a negative, a
    sorted list or a palindrome, a case built from the problem's constants, and random ones."""
    if domain == INTS:
        nums = [k for k in consts if isinstance(k, int)] or [3]
        dups = _numbers(rng, 2, 3)
        dups += dups[:2] + [-abs(dups[0]) - 1]
        rng.shuffle(dups)
        # Constants, their multiples and neighbours, so "count 7" or "multiples of 8" see hits.
        hinted = [rng.choice(nums) * rng.choice((1, 1, 2, -1)) + rng.choice((0, 0, 1, -1))
                  for _ in range(4)] + _numbers(rng, 1, 3)
        rng.shuffle(hinted)
        return ([[], _numbers(rng, 1, 1), dups, sorted(_numbers(rng, 3, 7)), hinted]
                + [_numbers(rng, 2, 8) for _ in range(n_random)])
    letters = "".join(c for k in consts if isinstance(k, (str, tuple)) for c in k)
    half = _random_word(rng, 1, 3)
    palindrome = half + _random_word(rng, 0, 1) + half[::-1]
    repeats = "".join(c * rng.randint(1, 3) for c in _random_word(rng, 2, 4))
    hinted = list(_random_word(rng, 2, 5) + "".join(rng.choices(letters or LETTERS, k=2)))
    rng.shuffle(hinted)
    return (["", _random_word(rng, 1, 1), palindrome, repeats, "".join(hinted)]
            + [_random_word(rng, 3, 9) for _ in range(n_random)])


# Fixed probe inputs: a problem's behaviour on them is its fingerprint. They contain every
# constant and its multiples, negatives, duplicates, and every letter of ALPHABET, so
# different constants give different fingerprints.
PROBES = {
    INTS: ([9, -9, 4, 12, -1, 3, 6], [1, 2, 3, 4, 5, 6, 7, 8], [-2, 8, -7, 13, 4, 11, 0, 3],
           [0, 0, 5, -3, 5], [15, 10, 5, 0, -5, -10], [3, 18, 9, -6, 14, 27], [20, -13, 7, 7, 1, -8, 16],
           [6, 6, 6, 2], []),
    WORD: ("education", "banana", "stress", "abcde", "racecar", "bulldozer", "mississippi", "tomato",
           "level", "a", ""),
}
