"""The multi-worker setup: a sweep (3 workers) and a tune study write to one PostgreSQL-backed
`mlflow server` at once; the server is killed mid-sweep and restarted; the sweep is resumed.

The servers come from scripts/tracking_server.sh (PostgreSQL from the Debian package). The test
is skipped, with the script's reason, only when PostgreSQL cannot be installed or started.
The figures (chains, runs, metrics written, outage length, what was lost) are printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import as_options, free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tracking_server.sh"
CHAINS = dict(campaigns=2, steps=2, batch_size=4, group_size=2, eval_tasks=8, eval_samples=2,
              max_new_tokens=48, lr=1e-3)


def script(command: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command, str(folder)], capture_output=True, text=True,
                          env=env, timeout=600)


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan that init does not reap still has a pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def popen(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "selfregress", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env)


@pytest.fixture
def postgres_server(tmp_path):
    folder = tmp_path / "tracking"
    env = {**os.environ, "PYTHON": sys.executable, "MLFLOW_PORT": str(free_port()),
           "PG_PORT": str(free_port()), "MLFLOW_WORKERS": "1"}
    started = script("start", folder, env)
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        if "PostgreSQL" in reason or "postgresql" in reason or "initdb" in reason or "createdb" in reason:
            pytest.skip(f"PostgreSQL cannot be installed or started here: {reason}")
        pytest.fail(f"tracking_server.sh start failed: {started.stderr[-2000:]}")
    url = started.stdout.strip().rsplit("=", 1)[-1]
    try:
        yield {"url": url, "folder": folder, "env": env}
    finally:
        script("stop", folder, env)


def test_sweep_and_tune_survive_a_server_restart(postgres_server, tmp_path, tiny_base, monkeypatch):
    from selfregress.tracking import connect

    url, folder = postgres_server["url"], postgres_server["folder"]
    # The clients ride out the outage by retrying (MLflow's own setting; the default is 7 tries).
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    store = connect("selfregress")
    sweep_args = ["sweep", "--conditions", "naive,es,kl", "--seeds", "0",
                  *as_options({**CHAINS, "model": tiny_base, "workers": 3})]
    sweep = popen(sweep_args, tmp_path / "sweep.log", env)
    tune_args = ["tune", "--controller", "es", "--n_trials", "1", "--seeds", "100", "--model", tiny_base,
                 "--storage", f"sqlite:///{tmp_path}/optuna.db", "--campaigns", "1", "--steps", "1",
                 "--eval_tasks", "4", "--out", str(tmp_path / "best.json")]
    tune = popen(tune_args, tmp_path / "tune.log", env)

    # Mid-sweep: once a campaign has finished, the server dies (SIGKILL) and comes back.
    deadline = time.monotonic() + 600
    while not store.find_runs("tags.`selfregress.kind` = 'campaign' and attributes.status = 'FINISHED'"):
        assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no campaign finished in 600 s"
        time.sleep(2)
    pid = int((folder / "mlflow.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    down = time.monotonic()
    while alive(pid):
        assert time.monotonic() - down < 60, f"the killed mlflow server {pid} is still alive"
        time.sleep(0.2)
    restarted = script("start", folder, postgres_server["env"])
    assert restarted.returncode == 0, restarted.stderr
    outage = time.monotonic() - down

    first = sweep.wait(timeout=900)
    tune_code = tune.wait(timeout=900)
    # `resume`: the same sweep command again skips finished chains and resumes the rest.
    again = subprocess.run([sys.executable, "-m", "selfregress", *sweep_args], capture_output=True,
                           text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    if tune_code != 0:
        tune_code = subprocess.run([sys.executable, "-m", "selfregress", *tune_args], env=env,
                                   capture_output=True, timeout=900).returncode
    assert tune_code == 0, (tmp_path / "tune.log").read_text()[-3000:]

    runs = store.find_runs("")
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    sweep_id = next(r.data.tags["sweep_id"] for r in runs if r.data.tags.get("selfregress.kind") == "sweep")
    chains = [r for r in runs if r.data.tags.get("selfregress.kind") == "chain"
              and r.data.tags.get("sweep_id") == sweep_id and r.info.status == "FINISHED"]
    assert sorted(r.data.tags["condition"] for r in chains) == ["es", "kl", "naive"]
    ids = {r.data.tags["chain_id"] for r in chains}
    # Every step's metrics exactly once: each FINISHED campaign of these chains has pass_at_1
    # and its diagnostics at steps 0..last, with no step logged twice.
    campaigns = [r for r in runs if r.data.tags.get("selfregress.kind") == "campaign"
                 and r.data.tags.get("chain_id") in ids and r.info.status == "FINISHED"]
    assert sorted((r.data.tags["chain_id"], r.data.tags["campaign"]) for r in campaigns) == sorted(
        (i, str(c)) for i in ids for c in range(CHAINS["campaigns"]))
    metrics = 0
    for run in runs:
        for key in run.data.metrics:
            history = store.client.get_metric_history(run.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), (run.info.run_name, key, steps)
            metrics += len(steps)
    for run in campaigns:
        steps = sorted(store.metric_history(run.info.run_id, "pass_at_1"))
        assert steps == list(range(len(steps))) and len(steps) >= 2
        assert sorted(store.metric_history(run.info.run_id, "eval/trials")) == steps
    trials = [r for r in runs if r.data.tags.get("selfregress.kind") == "trial" and r.info.status == "FINISHED"]
    assert len(trials) >= 1
    print(f"\npostgres: {len(chains)} chains, {len(campaigns)} campaigns, {len(runs)} runs, {metrics} "
          f"metric values, outage {outage:.1f} s (kill to health), first sweep exit {first}, "
          f"tune exit {tune_code}; RUNNING left: 0; duplicate steps: 0")
