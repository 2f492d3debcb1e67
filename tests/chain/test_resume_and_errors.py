"""Killing a chain (SIGKILL, SIGTERM) and resuming it; bad input through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from selfregress import metric_keys as K
from selfregress.records import campaign_records

from .conftest import TINY_CHAIN, as_options, cli

CHAIN = {**TINY_CHAIN, "steps": 8, "seed": 4}   # long enough to be killed mid-campaign


def start_chain(model: str, uri: str, **extra) -> subprocess.Popen:
    args = as_options({**CHAIN, "model": model, **extra})
    return subprocess.Popen([sys.executable, "-m", "selfregress", "main", *args],
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the chain exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.3)
    raise AssertionError("timed out")


def chain_run(store):
    runs = store.find_runs("tags.`selfregress.kind` = 'chain'")
    assert len(runs) == 1
    return runs[0]


def campaign_one_started(store) -> bool:
    runs = store.find_runs("tags.`selfregress.kind` = 'campaign' and tags.campaign = '1'")
    return bool(runs) and len(store.metric_history(runs[0].info.run_id, K.PASS_AT_1)) >= 2


def test_sigkill_mid_campaign_then_resume_equals_uninterrupted(tmp_path, cli_store, tiny_base):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    proc = start_chain(tiny_base, uri)
    try:
        wait_for(lambda: campaign_one_started(cli_store), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    chain_id = chain_run(cli_store).data.tags["chain_id"]
    assert len(campaign_records(cli_store, chain_id)) == 1       # campaign 1 did not finish

    resumed = cli("main", *as_options({**CHAIN, "model": tiny_base, "resume": "true"}))
    assert resumed.returncode == 0, resumed.stderr
    run = chain_run(cli_store)
    assert run.info.status == "FINISHED"
    records = campaign_records(cli_store, chain_id)
    assert [r.index for r in records] == [0, 1]
    killed = cli_store.find_runs("tags.`selfregress.superseded` = 'true'")
    assert len(killed) == 1 and killed[0].info.status == "KILLED"
    steps = [m.step for m in cli_store.client.get_metric_history(run.info.run_id, K.PASS_AT_1)]
    assert sorted(steps) == list(range(18))                            # no step logged twice

    # the same chain, uninterrupted, in another store
    other = f"sqlite:///{tmp_path}/other.db"
    straight = cli("main", *as_options({**CHAIN, "model": tiny_base}), env={"MLFLOW_TRACKING_URI": other})
    assert straight.returncode == 0, straight.stderr
    os.environ["MLFLOW_TRACKING_URI"] = other
    from selfregress.tracking import connect
    other_store = connect("selfregress")
    other_records = campaign_records(other_store, chain_run(other_store).data.tags["chain_id"])
    assert [r.pass_at_1 for r in records] == [r.pass_at_1 for r in other_records]
    # the report-split figures too: campaign 0's were logged before the kill, and the resumed
    # chain measured campaign 1's start (campaign 0's end) by reusing them
    report_keys = [keys[p] for keys in (K.REPORT_PASS_AT_1, K.RLSET_PASS_AT_1) for p in K.REPORT_POINTS]
    assert [[r.metrics[k] for k in report_keys] for r in records] == [
        [r.metrics[k] for k in report_keys] for r in other_records]
    for key in (K.CHAIN_END, K.CHAIN_PEAK, K.CHAIN_GAP):
        assert run.data.metrics[key] == chain_run(other_store).data.metrics[key]


def test_sigterm_ends_the_run_killed(cli_store, tiny_base):
    proc = start_chain(tiny_base, os.environ["MLFLOW_TRACKING_URI"])
    wait_for(lambda: bool(cli_store.find_runs("tags.`selfregress.kind` = 'campaign'")), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr
    assert chain_run(cli_store).info.status == "KILLED"
    assert all(r.info.status == "KILLED" for r in cli_store.find_runs("tags.`selfregress.kind` = 'campaign'"))


@pytest.mark.parametrize("options, message", [
    ({"condition": "bogus"}, "'condition' must be one of"),
    ({"seed": "-1"}, "'seed' must be >= 0"),
    ({"steps": "0"}, "'steps' must be at least 1"),
    ({"condition": "grpo", "group_size": "1"}, "group_size >= 2"),
    ({"eval_samples": "0"}, "'eval_samples' must be at least 1"),
    ({"report_tasks": "-1"}, "'report_tasks' must be >= 0"),
    ({"model": "/nonexistent/model"}, "does not exist"),
    ({"resume": "true", "seed": "77"}, "no chain to resume"),
    ({"lora_rank": "-1"}, "'lora_rank' must be >= 0"),
    ({"lora_rank": "4", "lora_alpha": "0"}, "'lora_alpha' > 0"),
    ({"device": "tpu"}, "'device' must be one of auto, cpu, cuda"),
    ({"dtype": "fp16"}, "'dtype' must be one of fp32, bf16"),
    ({"micro_batch": "-2"}, "'micro_batch' must be >= 0"),
    pytest.param({"device": "cuda"}, "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_input_is_one_clear_line(options, message, cli_store, tiny_base):
    result = cli("main", *as_options({**CHAIN, "model": tiny_base, **options}))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not cli_store.find_runs("attributes.status = 'RUNNING'")


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    if int(stat.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        found.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def test_a_sweep_closes_the_runs_of_a_chain_the_kernel_killed(cli_store, tiny_base):
    """A chain process SIGKILLed (what the OOM killer does: the pilot of session 13 lost a chain so)
    cannot close its own runs; the sweep closes them as KILLED, says why, and its next invocation
    resumes the chain to FINISHED."""
    from selfregress.sweep import SHARED

    options = as_options({**{k: v for k, v in CHAIN.items() if k in SHARED}, "model": tiny_base, "workers": 1})
    args = [sys.executable, "-m", "selfregress", "sweep", "--conditions", "naive", "--seeds", "4", *options]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: campaign_one_started(cli_store), proc)
        [chain_pid] = [pid for pid in children_of(proc.pid)
                       if b"main" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")]
        os.kill(chain_pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in stderr
    assert "naive seed 4 FAILED (exit -9, killed by signal 9: SIGKILL, the kernel's OOM killer" in stderr
    chain = chain_run(cli_store)
    left = [chain, *cli_store.find_runs("tags.`selfregress.kind` = 'campaign'")]
    assert not [r for r in left if r.info.status == "RUNNING"]
    killed = [r for r in left if r.info.status == "KILLED"]
    assert chain.info.run_id in {r.info.run_id for r in killed}
    assert len(killed) == 2                              # the chain and campaign 1; campaign 0 finished
    assert all("exited with -9" in r.data.tags[K.ERROR] for r in killed)

    again = cli("sweep", "--conditions", "naive", "--seeds", "4", *options)
    assert again.returncode == 0, again.stderr
    assert "resuming chain" in again.stderr
    assert chain_run(cli_store).info.status == "FINISHED"
