"""The whole sweep -> report -> promote flow against a real `mlflow server` over HTTP.

The server runs on 127.0.0.1 on a free port, with a sqlite backend and proxied artifacts in a
temp dir; the CLI reaches it through MLFLOW_TRACKING_URI. The result is checked through the
REST API, and the server is stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from .conftest import free_port, stop_group, wait_until_up
from .test_sweep_report_promote import sweep_report_promote


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "server.log"
    wait_until_up(f"{url}/health", proc, log_file, 120)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    try:
        yield url
    finally:  # stopped by its PID (its process group: the server's workers too)
        stop_group(proc, f"{url}/health")
        log.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=2)


def rest(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_sweep_report_promote_against_a_server(mlflow_server, tmp_path, tiny_base):
    from selfregress.policy import load_policy
    from selfregress.tracking import connect

    url = mlflow_server
    store = connect("selfregress")
    assert store.uri == url
    ids = sweep_report_promote(store, tiny_base, tmp_path, audit=False, campaigns=1, steps=1)  # audit: sqlite test

    # What a team would see through the server's REST API.
    experiment = rest(url, "experiments/get-by-name?experiment_name=selfregress")["experiment"]
    found = rest(url, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                      "filter": f"tags.sweep_id = '{ids['sweep_id']}' and tags.`selfregress.kind` = 'chain'", "max_results": 100})
    assert len(found["runs"]) == 4
    assert {r["info"]["status"] for r in found["runs"]} == {"FINISHED"}
    alias = rest(url, "registered-models/alias?name=selfregress&alias=champion")["model_version"]
    assert alias["version"] == ids["version"]
    assert load_policy("models:/selfregress@champion").model is not None   # artifacts over HTTP
