"""Loaders on small files in each dataset's native format (written by conftest at test time)."""

import base64
import json
import logging
import pickle
import zlib

import pytest

from selfregress.tasks import Task, TaskError, load_tasks, read_jsonl, write_jsonl
from selfregress.tasks.loaders import decode_private_tests


def by_id(tasks):
    return {t.task_id: t for t in tasks}


def test_apps_stdio_call_based_and_line_lists(datasets, reference_passes, caplog):
    with caplog.at_level(logging.WARNING, logger="selfregress.tasks"):
        tasks = by_id(load_tasks(f"apps:{datasets['apps']}"))
    assert sorted(tasks) == ["apps/10", "apps/11", "apps/12"]
    assert "skipped 1 of 4 records: 1 no tests" in caplog.text
    stdio, call, lines = tasks["apps/10"], tasks["apps/11"], tasks["apps/12"]
    assert stdio.fn_name is None and stdio.tests[1] == {"input": "-5 5\n", "output": "0\n"}
    assert stdio.source == "apps" and stdio.difficulty == "introductory" and stdio.starter_code is None
    assert stdio.time_limit_s == 4.0
    assert call.fn_name == "add" and call.starter_code.startswith("def add")
    assert [json.loads(t["input"]) for t in call.tests] == [[1, 2], [3, 4]]
    assert [json.loads(t["output"]) for t in call.tests] == [3, 7]  # one-element wrapping undone
    assert lines.tests[0] == {"input": "3\n1 2 3", "output": "6"}
    for task in tasks.values():
        assert task.solutions and all(reference_passes(s, task) for s in task.solutions), task.task_id


def test_taco_reads_its_time_and_memory_limits(datasets, reference_passes):
    (task,) = load_tasks(f"taco:{datasets['taco']}")
    assert task.task_id == "taco/0" and task.source == "taco" and task.difficulty == "EASY"
    assert task.time_limit_s == 1.0 and task.memory_mb == 256 and len(task.tests) == 3
    assert reference_passes(task.solutions[0], task)


def test_codecontests_all_test_sets_and_python3_solutions_only(datasets, reference_passes):
    (task,) = load_tasks(f"codecontests:{datasets['codecontests']}")
    assert task.task_id == "codecontests/1_A. Double" and task.prompt.startswith("Print twice")
    assert [t["input"] for t in task.tests] == ["2\n", "-3\n", "0\n", "1000000\n"]  # public, private, generated
    assert task.solutions == ("print(2 * int(input()))\n",)  # language 3 only
    assert task.time_limit_s == 2.5 and task.memory_mb == 256 and task.difficulty == 7
    assert reference_passes(task.solutions[0], task)
    (capped,) = load_tasks(f"codecontests:{datasets['codecontests']}", max_tests=2, time_limit_s=5)
    assert len(capped.tests) == 2 and capped.time_limit_s == 5.0


def test_codecontests_parquet(tmp_path, records):
    """The Hugging Face layout of code_contests is parquet (struct columns)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(records["codecontests"]), path)
    (task,) = load_tasks(f"codecontests:{path}")
    assert len(task.tests) == 4 and task.solutions == ("print(2 * int(input()))\n",)


def test_livecodebench_refuses_pickled_private_tests_without_opt_in(datasets, caplog):
    with caplog.at_level(logging.WARNING, logger="selfregress.tasks"):
        tasks = by_id(load_tasks(f"livecodebench:{datasets['livecodebench']}"))
    stdin = tasks["livecodebench/abc001_a"]
    assert stdin.tests == ({"input": "1 2\n", "output": "3\n"},)  # public only
    assert "allow_pickle=True" in caplog.text
    functional = tasks["livecodebench/2812"]  # its private tests are plain JSON: always kept
    assert functional.fn_name == "addTwo" and functional.starter_code.startswith("class Solution")
    assert [json.loads(t["input"]) for t in functional.tests] == [[1, [2, 3]], [0, []]]
    assert [t["output"] for t in functional.tests] == ["6", "0"]
    assert functional.time_limit_s == 6.0 and functional.difficulty == "medium"


def test_livecodebench_decodes_pickled_tests_with_opt_in(datasets, records, reference_passes):
    tasks = by_id(load_tasks(f"livecodebench:{datasets['livecodebench']}", allow_pickle=True))
    assert [t["input"] for t in tasks["livecodebench/abc001_a"].tests] == ["1 2\n", "10 20\n", "-1 1\n"]
    for task_id, program in records["livecodebench_references"].items():
        assert not tasks[task_id].solutions  # the dataset has none
        assert reference_passes(program, tasks[task_id]), task_id


def test_even_with_opt_in_a_pickle_that_reaches_for_code_is_refused(tmp_path, caplog):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    record = {"question_content": "x", "question_id": "evil", "public_test_cases": json.dumps(
        [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]),
        "private_test_cases": base64.b64encode(zlib.compress(pickle.dumps(Exploit()))).decode()}
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(TaskError, match="no gradable livecodebench tasks .*could not be decoded"):
        load_tasks(f"livecodebench:{path}", allow_pickle=True)
    assert not marker.exists()
    assert decode_private_tests(record["private_test_cases"], allow_pickle=False) is None


def test_mbpp_asserts_of_any_shape_and_setup_code_become_test_code(datasets, records, reference_passes,
                                                                  caplog):
    with caplog.at_level(logging.WARNING, logger="selfregress.tasks"):
        tasks = by_id(load_tasks(f"mbpp:{datasets['mbpp']}"))
    assert sorted(tasks) == ["mbpp/2", "mbpp/3", "mbpp/4"]
    assert caplog.text == ""  # nothing skipped, no check dropped
    shared = tasks["mbpp/2"]
    assert shared.tests == () and shared.fn_name == "similar_elements"
    assert shared.test_code == "\n".join(records["mbpp"][0]["test_list"]) + "\n"  # the set() assert too
    assert "Your code should pass these tests:\nassert similar_elements" in shared.prompt
    assert tasks["mbpp/4"].test_code == "x = 1\nassert f(x) == 1\n"  # test_setup_code first
    for task in tasks.values():
        assert reference_passes(task.solutions[0], task), task.task_id
    assert not reference_passes("def similar_elements(a, b):\n    return (4, 5)", shared)


def test_humaneval_keeps_the_whole_check_function(datasets, records, reference_passes, caplog):
    with caplog.at_level(logging.WARNING, logger="selfregress.tasks"):
        tasks = by_id(load_tasks(f"humaneval:{datasets['humaneval']}"))  # a .jsonl.gz file
    assert caplog.text == ""
    close = tasks["HumanEval/0"]
    assert close.fn_name == "has_close_elements" and close.starter_code.startswith("from typing import List")
    assert close.tests == () and records["humaneval"][0]["test"].strip() in close.test_code  # the loop too
    assert close.test_code.startswith("from typing import List\n")  # the prompt, less the stub
    assert "def has_close_elements" not in close.test_code
    assert close.test_code.endswith("\ncheck(has_close_elements)\n")
    assert "has_close_elements" in close.prompt and close.solutions[0].startswith(close.starter_code)
    for task in tasks.values():
        assert reference_passes(task.solutions[0], task), task.task_id
    assert not reference_passes(close.starter_code + "    return True\n", close)


def test_a_folder_of_files_and_a_json_array(tmp_path, datasets):
    folder = tmp_path / "apps_dir"
    folder.mkdir()
    (folder / "a.jsonl").write_text(datasets["apps"].read_text())
    records = [json.loads(line) for line in datasets["apps"].read_text().splitlines()]
    (folder / "b.json").write_text(json.dumps(records))
    assert len(load_tasks(f"apps:{folder}")) == 6
    assert len(load_tasks(f"apps:{folder}", limit=4)) == 4


# -- the schema file -------------------------------------------------------------------------
def test_jsonl_round_trip_and_plain_path(tmp_path):
    tasks = load_tasks("synthetic:20", split="test")
    path = tmp_path / "out" / "t.jsonl"
    write_jsonl(tasks, path)
    assert read_jsonl(path) == tasks
    assert load_tasks(f"jsonl:{path}") == tasks and load_tasks(str(path), limit=3) == tasks[:3]
    assert Task.from_dict(tasks[0].to_dict()) == tasks[0]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    good = json.dumps(load_tasks("synthetic:1")[0].to_dict())
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + good[:-5] + "\n")
    with pytest.raises(TaskError, match=r"bad\.jsonl:3: malformed JSON"):
        read_jsonl(path)
    path.write_text(good + "\n" + json.dumps({**json.loads(good), "memory_mb": "lots"}) + "\n")
    with pytest.raises(TaskError, match=r"bad\.jsonl:2: task key 'memory_mb' must be a positive int"):
        read_jsonl(path)
    path.write_text(json.dumps({**json.loads(good), "extra": 1}) + "\n")
    with pytest.raises(TaskError, match=r"bad\.jsonl:1: unknown task key 'extra'"):
        read_jsonl(path)
    path.write_text(json.dumps({"task_id": "x", "prompt": "p", "tests": []}) + "\n")
    with pytest.raises(TaskError, match="'tests' must be a non-empty list"):
        read_jsonl(path)


@pytest.mark.parametrize("source, message", [
    ("nope:x", "unknown task source 'nope:x'; known: synthetic"),
    ("tasks.txt", "unknown task source"),
    ("apps:/does/not/exist.jsonl", "no such file or folder"),
    ("apps:", "names no path"),
    ("synthetic:0", "synthetic:N with N a positive integer"),
    ("synthetic:abc", "synthetic:N with N a positive integer"),
    ("/does/not/exist.jsonl", "no such file"),
])
def test_bad_sources_say_what_is_wrong(source, message):
    with pytest.raises(TaskError, match=message):
        load_tasks(source)


def test_bad_files_and_options(tmp_path, datasets, records):
    with pytest.raises(TaskError, match="missing 'question', which every APPS record has; is the source"):
        load_tasks(f"apps:{datasets['mbpp']}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaskError, match="no .jsonl, .json or .parquet files"):
        load_tasks(f"mbpp:{empty}")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(TaskError, match="unsupported file type"):
        load_tasks(f"mbpp:{tmp_path / 'x.csv'}")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(records["mbpp"][0]) + "\n{oops\n")
    with pytest.raises(TaskError, match=r"broken\.jsonl:2: malformed JSON"):
        load_tasks(f"mbpp:{broken}")
    with pytest.raises(TaskError, match="unknown task option 'limt'"):
        load_tasks("synthetic:2", limt=1)
    with pytest.raises(TaskError, match="'limit' must be a positive integer"):
        load_tasks("synthetic:2", limit=0)
    with pytest.raises(TaskError, match="option 'allow_pickle' applies only to the livecodebench"):
        load_tasks(f"mbpp:{datasets['mbpp']}", allow_pickle=True)
    with pytest.raises(TaskError, match="option 'split' applies only to the synthetic"):
        load_tasks(f"mbpp:{datasets['mbpp']}", split="eval")
    assert issubclass(TaskError, ValueError)
