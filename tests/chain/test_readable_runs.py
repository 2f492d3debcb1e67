"""What a person sees in the MLflow UI: model-training experiments, descriptions, campaign
boundaries on the chain's curve, one-value summaries, and a refused run that says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.config import parse
from selfregress.records import campaign_records

from .conftest import TINY_CHAIN, cli

ROOT = Path(__file__).resolve().parents[2]


def test_a_chain_reads_in_words_and_shows_its_campaign_boundaries(mlflow_store, tiny_base):
    from grader import Grader

    config = parse(ChainConfig, {**TINY_CHAIN, "model": tiny_base, "condition": "es", "steps": 3})
    with Grader(workers=2) as grader:
        chain_id = run_chain(config, mlflow_store, grader, tiny_base, log=lambda m: None)

    exp = mlflow_store.client.get_experiment(mlflow_store.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    chain = mlflow_store.chain_run(chain_id)[0]
    note = chain.data.tags["mlflow.note.content"]
    assert note.startswith("A chain of 2 campaigns of up to 3 policy-gradient steps (condition **es**")
    assert f"It ended at pass@1 {chain.data.metrics[K.CHAIN_END]:.3f}" in note

    # campaign_index: 0 over campaign 0's points, then 1 from the global step where campaign 1 starts
    records = campaign_records(mlflow_store, chain_id)
    first = len(records[0].pass_at_1)
    boundaries = mlflow_store.metric_history(chain.info.run_id, K.CHAIN_CAMPAIGN)
    assert boundaries == {s: float(s >= first) for s in range(first + len(records[1].pass_at_1))}
    assert sorted(boundaries) == sorted(mlflow_store.metric_history(chain.info.run_id, K.PASS_AT_1))
    # one value per chain, at step 0: a bar across runs in the chart view, not a lone dot at step 63
    for key in (K.CHAIN_END, K.CHAIN_PEAK, K.CHAIN_GAP):
        assert [m.step for m in mlflow_store.client.get_metric_history(chain.info.run_id, key)] == [0]

    for record in records:
        note = mlflow_store.get_run(record.run_id).data.tags["mlflow.note.content"]
        assert note.startswith(f"Campaign {record.index} of the es chain (seed 0): "
                               f"{len(record.pass_at_1) - 1} of a budget of")
        assert f"The controller decided **{record.tags[K.DECISION]}**" in note

    # samples/train.jsonl: every step's RL batch, reply beside program beside verdict, adding up
    # to the step's logged mean reward
    import json

    from mlflow.artifacts import download_artifacts

    from selfregress.policy import extract_program

    for record in records:
        path = download_artifacts(run_id=record.run_id, artifact_path="samples/train.jsonl")
        lines = [json.loads(line) for line in open(path, encoding="utf-8")]
        steps = len(record.pass_at_1) - 1
        assert len(lines) == steps * config.batch_size * config.group_size
        assert all(line["program"] == extract_program(line["reply"]) for line in lines)
        rewards = mlflow_store.metric_history(record.run_id, K.TRAIN_REWARD_MEAN)
        for step in range(1, steps + 1):
            batch = [line for line in lines if line["step"] == step]
            assert [line["sample"] for line in batch] == list(range(config.group_size)) * config.batch_size
            assert sum(line["reward"] for line in batch) / len(batch) == rewards[step]


def test_a_refused_entry_point_run_records_its_error(cli_store):
    """Under `mlflow run` (MLFLOW_RUN_ID set) a refused input fails the run with a readable name,
    the one-line error as a tag and as its description; the Default experiment becomes model training."""
    run = cli_store.client.create_run("0", run_name="upbeat-gnu-123")   # as `mlflow run` makes it
    result = cli("main", "--condition", "ES", env={"MLFLOW_RUN_ID": run.info.run_id})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1][len("error: "):]
    assert error.startswith("'condition' must be one of")
    refused = cli_store.get_run(run.info.run_id)
    assert refused.info.status == "FAILED" and refused.info.run_name == "main-refused"
    assert refused.data.tags["selfregress.error"] == error
    assert refused.data.tags["mlflow.note.content"] == f"**Refused.** `main` did not start: {error}"
    assert cli_store.client.get_experiment("0").tags["mlflow.experimentKind"] == "custom_model_development"


def test_mlflow_run_tune_with_a_bad_search_fails_its_run_in_one_line(cli_store, tmp_path):
    """The real `mlflow run . -e tune`: a search over an unknown parameter is refused in one line,
    and the run `mlflow run` made ends FAILED, named and carrying the error; nothing is left RUNNING."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}  # its `python`
    result = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local",
                             "-e", "tune", "-P", "search=bogus=1:2", "-P", "chain_params=batch_size=4"],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "error: search: unknown chain parameter 'bogus'" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("error: search:")[0][-2000:]
    runs = cli_store.client.search_runs(["0"])
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and runs[0].info.run_name == "tune-refused"
    assert runs[0].data.tags["selfregress.error"].startswith("search: unknown chain parameter 'bogus'")
    assert runs[0].data.params["search"] == "bogus=1:2"
