"""The Task schema: defaults, round trip, and one-line errors naming the bad key."""

import pytest

from selfregress.errors import UserError
from selfregress.tasks import Task, TaskError

MINIMAL = {"task_id": "t/1", "prompt": "Print 1.", "tests": [{"input": "", "output": "1\n"}]}


def test_defaults_and_round_trip():
    task = Task.from_dict(MINIMAL)
    assert (task.fn_name, task.starter_code, task.time_limit_s, task.memory_mb, task.source,
            task.difficulty, task.float_tol, task.solutions) == (None, None, 2.0, 256, "synthetic", None, None, ())
    full = {**MINIMAL, "fn_name": "f", "starter_code": "def f():", "time_limit_s": 3, "memory_mb": 512,
            "source": "mbpp", "difficulty": "easy", "float_tol": 1e-6, "solutions": ["def f():\n    return 1"]}
    task = Task.from_dict(full)
    assert task.time_limit_s == 3.0 and isinstance(task.time_limit_s, float)
    assert task.to_dict() == {**full, "time_limit_s": 3.0, "test_code": None}
    assert Task.from_dict(task.to_dict()) == task
    assert isinstance(task.tests, tuple) and isinstance(task.solutions, tuple)


@pytest.mark.parametrize("change, message", [
    ({"task_id": ""}, "'task_id' must be a non-empty str"),
    ({"tests": [{"input": "1"}]}, r"tests\[0\] must be exactly"),
    ({"tests": [{"input": 1, "output": "1"}]}, r"tests\[0\] must be exactly"),
    ({"memory_mb": True}, "'memory_mb' must be a positive int"),
    ({"time_limit_s": 0}, "'time_limit_s' must be a positive int/float"),
    ({"fn_name": 3}, "'fn_name' must be str or null"),
    ({"difficulty": 1.5}, "'difficulty' must be str/int or null"),
    ({"solutions": "print(1)"}, "'solutions' must be a list of strings"),
    ({"colour": "red"}, "unknown task key 'colour'"),
])
def test_bad_values_name_the_key(change, message):
    with pytest.raises(TaskError, match=message):
        Task.from_dict({**MINIMAL, **change})


def test_test_code_tasks_have_no_tests():
    task = Task.from_dict({**MINIMAL, "tests": [], "test_code": "assert f() == 1\n", "fn_name": "f"})
    assert task.tests == () and task.test_code == "assert f() == 1\n"
    assert Task.from_dict(task.to_dict()) == task
    with pytest.raises(TaskError, match="a task with 'test_code' has no 'tests'"):
        Task.from_dict({**MINIMAL, "test_code": "assert f() == 1\n"})
    with pytest.raises(TaskError, match="'test_code' must be a non-empty str"):
        Task.from_dict({**MINIMAL, "tests": [], "test_code": ""})
    with pytest.raises(TaskError, match="'tests' must be a non-empty list"):
        Task.from_dict({**MINIMAL, "tests": []})


def test_missing_keys_and_non_objects():
    with pytest.raises(TaskError, match="missing required key 'tests'"):
        Task.from_dict({"task_id": "t", "prompt": "p"})
    with pytest.raises(TaskError, match="must be a JSON object"):
        Task.from_dict(["not", "a", "dict"])
    assert issubclass(TaskError, ValueError) and issubclass(TaskError, UserError)
