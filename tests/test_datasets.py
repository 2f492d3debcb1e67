"""The splits as MLflow datasets: logged to a real sqlite store and read back."""

from __future__ import annotations

import hashlib
import json

import pytest

from selfregress.datasets import CONTEXTS, DIGEST_CHARS, log_splits, split_digests, tasks_sha256
from selfregress.tasks import synthetic_splits


@pytest.fixture(scope="module")
def splits():
    s = synthetic_splits(seed=0, n_pretrain=0, n_rl=6, n_eval=8, n_test=5)
    return {"rl": s.rl, "selection": s.eval[:4], "report": s.eval[4:], "test": s.test}


def test_digest_is_sha256_of_canonical_json(splits):
    tasks = splits["rl"]
    canonical = json.dumps([t.to_dict() for t in tasks], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    assert tasks_sha256(tasks) == hashlib.sha256(canonical.encode()).hexdigest()
    assert tasks_sha256([t.to_dict() for t in tasks]) == tasks_sha256(tasks)   # dicts or Tasks
    changed = [tasks[0].to_dict() | {"prompt": tasks[0].prompt + " "}, *tasks[1:]]
    assert tasks_sha256(changed) != tasks_sha256(tasks)                        # one space differs
    assert tasks_sha256(list(reversed(tasks))) != tasks_sha256(tasks)          # order counts
    digests = split_digests(splits)
    assert list(digests) == list(CONTEXTS) and len(set(digests.values())) == 4
    assert digests["rl"] == tasks_sha256(tasks)[:DIGEST_CHARS]


def test_log_splits_reads_back_from_sqlite(mlflow_store, splits, tmp_path):
    run = mlflow_store.client.create_run(mlflow_store.experiment_id)
    digests = log_splits(splits, run_id=run.info.run_id, client=mlflow_store.client)

    inputs = mlflow_store.get_run(run.info.run_id).inputs.dataset_inputs
    got = {}
    for item in inputs:
        tags = {t.key: t.value for t in item.tags}
        got[tags["mlflow.data.context"]] = (item.dataset.name, item.dataset.digest, tags["selfregress.sha256"],
                                            json.loads(item.dataset.profile)["num_rows"])
    assert got == {c: (f"synthetic/{c}", digests[c], tasks_sha256(splits[c]), len(splits[c])) for c in CONTEXTS}
    assert all(item.dataset.source_type == "code" for item in inputs)
    schema = json.loads(inputs[0].dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == ["task_id", "prompt", "starter_code", "fn_name", "tests",
                                           "difficulty", "source"]

    # A task file is a local-file source, named by its file; an unknown context is refused.
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in splits["test"]))
    other = mlflow_store.client.create_run(mlflow_store.experiment_id)
    log_splits({"test": splits["test"]}, run_id=other.info.run_id, source=str(path), client=mlflow_store.client)
    [item] = mlflow_store.get_run(other.info.run_id).inputs.dataset_inputs
    assert (item.dataset.name, item.dataset.source_type) == ("tasks.jsonl/test", "local")
    assert json.loads(item.dataset.source)["uri"] == str(path)
    with pytest.raises(ValueError, match="unknown split context 'eval'"):
        log_splits({"eval": splits["test"]}, run_id=other.info.run_id, client=mlflow_store.client)
