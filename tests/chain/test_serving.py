"""The champion serves: a pyfunc over a checkpoint, loaded in-process and behind `mlflow models serve`.

The checkpoint is the tiny base, logged as a LoggedModel the way a campaign logs its steps, then
registered the way `promote` registers its winner (log_servable + Store.register); promote's own
path through the CLI is checked in test_sweep_report_promote.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from selfregress.serving import CONSTRAINTS, SamplingDefaults, log_servable, pinned_requirements

from .conftest import free_port, stop_group, wait_until_up

TASKS = ["Read an integer n and print n + 1.", "Read a line and print it reversed.",
         "Read two integers a and b and print their sum."]


@pytest.fixture
def champion(mlflow_store, tiny_base):
    """selfregress@champion: a pyfunc over the tiny base, with max_new_tokens 24 by default."""
    with mlflow_store.run("campaign", "campaign") as run:
        checkpoint = run.log_checkpoint(tiny_base, "step-0", step=0)
    with mlflow_store.run("promote", "promote") as run:
        uri = log_servable(tiny_base, mlflow_store.client, mlflow_store.experiment_id, run_id=run.run_id,
                           name="selfregress", tags={"model_id": checkpoint, "step": 0},
                           defaults=SamplingDefaults(max_new_tokens=24))
        version = mlflow_store.register(uri[len("models:/"):], "selfregress", "champion", tags={"model_id": checkpoint})
    return {"uri": uri, "version": version, "checkpoint": checkpoint}


def test_champion_loads_in_process_and_answers_each_task(mlflow_store, champion):
    import mlflow.pyfunc
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    version = mlflow_store.client.get_model_version_by_alias("selfregress", "champion")
    assert version.source == champion["uri"] and version.tags["model_id"] == champion["checkpoint"]
    logged = mlflow_store.client.get_logged_model(champion["uri"][len("models:/"):])
    assert logged.model_type == "pyfunc" and logged.tags["model_id"] == champion["checkpoint"]

    model = mlflow.pyfunc.load_model("models:/selfregress@champion")
    defaults = {p.name: p.default for p in model.metadata.get_params_schema().params}
    assert defaults == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "seed": 0}
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["prompt", "starter_code"]

    frame = pd.DataFrame({"prompt": TASKS})
    out = model.predict(frame)
    assert list(out.columns) == ["program", "completion"] and len(out) == 3
    assert all(isinstance(p, str) for p in out["program"]) and any(p.strip() for p in out["program"])
    assert out.equals(model.predict(frame, params={"seed": 0}))                 # the default seed
    greedy = model.predict(frame, params={"temperature": 0.0, "max_new_tokens": 8})
    assert greedy.equals(model.predict(frame, params={"temperature": 0.0, "max_new_tokens": 8, "seed": 5}))

    # The model carries its pinned requirements, and promote's path to the weights still loads.
    from mlflow.artifacts import download_artifacts

    from selfregress.policy import load_policy
    folder = download_artifacts(artifact_uri="models:/selfregress@champion")
    requirements = open(os.path.join(folder, "requirements.txt")).read().split()
    assert requirements == pinned_requirements(CONSTRAINTS.read_text())
    pins = dict(r.split("==") for r in requirements)
    assert pins["torch"] == "2.13.0" and {"mlflow", "transformers", "tokenizers", "pandas"} <= set(pins)
    assert load_policy("models:/selfregress@champion").model.config.model_type == "qwen2"


def test_pinned_requirements_prefer_constraints():
    pins = "# comment\nTorch==2.0.1\nhuggingface-hub==0.1.0 ; python_version > '3'\n"
    assert pinned_requirements(pins, ("torch", "huggingface_hub", "no-such-package-xyz")) == [
        "torch==2.0.1", "huggingface_hub==0.1.0", "no-such-package-xyz"]


def test_mlflow_models_serve_answers_invocations(mlflow_store, champion, tmp_path):
    port = free_port()
    elsewhere = tmp_path / "elsewhere"      # any folder: the model brings its own code
    elsewhere.mkdir()
    log = (tmp_path / "serve.log").open("w")
    # As from an activated venv: `mlflow models serve` execs `uvicorn` from PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/selfregress@champion",
                             "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=elsewhere, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/ping", proc, tmp_path / "serve.log", 180)
        body = {"dataframe_split": {"columns": ["prompt"], "data": [[t] for t in TASKS]},
                "params": {"max_new_tokens": 16, "seed": 1}}
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 3
        assert all(set(p) == {"program", "completion"} and isinstance(p["program"], str) for p in predictions)
    finally:  # stopped by its pid: the server's process group (uvicorn and its workers)
        stop_group(proc, f"{url}/ping")
        log.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)
