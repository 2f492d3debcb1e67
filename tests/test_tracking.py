"""The tracking module against a real sqlite store: run lifecycle, checkpoints, registry."""

import pytest

from selfregress.errors import UserError
from selfregress.tracking import Terminated, download_model


def _status(store, run_id):
    return store.client.get_run(run_id).info.status


def test_run_ends_finished_with_params_tags_and_metrics(mlflow_store):
    with mlflow_store.run("r", "chain", tags={"seed": 2}, params={"lr": 0.1}) as run:
        run.log_metrics({"pass_at_1": 0.25, "eval/trials": 8}, step=3)
    data = mlflow_store.client.get_run(run.run_id).data
    assert _status(mlflow_store, run.run_id) == "FINISHED"
    assert data.tags["selfregress.kind"] == "chain" and data.tags["seed"] == "2"
    assert data.params["lr"] == "0.1"
    history = mlflow_store.client.get_metric_history(run.run_id, "pass_at_1")
    assert [(m.step, m.value) for m in history] == [(3, 0.25)]


@pytest.mark.parametrize("error, status", [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED"),
                                           (Terminated, "KILLED")])
def test_run_is_never_left_running(mlflow_store, error, status):
    with pytest.raises(error):
        with mlflow_store.run("r", "chain") as run:
            run.log_metrics({"pass_at_1": 0.5}, step=0)
            raise error("stop")
    assert _status(mlflow_store, run.run_id) == status
    assert mlflow_store.client.get_metric_history(run.run_id, "pass_at_1")[0].value == 0.5


def test_nested_run_has_parent(mlflow_store):
    with mlflow_store.run("chain", "chain") as chain:
        with mlflow_store.run("c0", "campaign", parent=chain) as campaign:
            pass
    tags = mlflow_store.client.get_run(campaign.run_id).data.tags
    assert tags["mlflow.parentRunId"] == chain.run_id


def test_log_series_keeps_every_point(mlflow_store):
    with mlflow_store.run("r", "bootstrap") as run:
        run.log_series("sft/loss", [float(i) for i in range(1500)], start_step=1)
    history = mlflow_store.client.get_metric_history(run.run_id, "sft/loss")
    assert len(history) == 1500 and {m.step for m in history} == set(range(1, 1501))


def test_checkpoint_round_trip_and_registry(mlflow_store, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    with mlflow_store.run("r", "campaign") as run:
        model_id = run.log_checkpoint(folder, name="c0-s4", step=4, tags={"step": 4})
        run.log_metrics({"pass_at_1": 0.3}, step=4, model_id=model_id)
    outputs = mlflow_store.client.get_run(run.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model_id, 4)]
    local = download_model(f"models:/{model_id}")
    assert (tmp_path / local / "config.json").read_text() == '{"a": 1}'

    assert mlflow_store.registered_uri("sr", "champion") is None
    version = mlflow_store.register(model_id, "sr", "champion", tags={"step": 4})
    assert version == "1"
    assert mlflow_store.registered_uri("sr", "champion") == "models:/sr@champion"
    assert "config.json" in str(list((tmp_path / download_model("models:/sr@champion")).iterdir()))


def test_unreachable_server_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    from selfregress.tracking import connect

    with pytest.raises(UserError, match="cannot reach the MLflow tracking store"):
        connect("x")


def test_download_of_missing_model_is_a_user_error(mlflow_store):
    with pytest.raises(UserError, match="cannot load"):
        download_model("models:/nothing@here")


@pytest.fixture
def sigterm_handler():
    import signal

    from selfregress.tracking import install_sigterm_handler

    previous = signal.getsignal(signal.SIGTERM)
    install_sigterm_handler()
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_inside_a_store_call_waits_for_it_to_finish(mlflow_store, sigterm_handler):
    """SIGTERM landing in the middle of a SQLAlchemy query (here: on its first statement).

    Raised there, it used to leave a sqlite lock behind, so that closing the run as KILLED
    failed with "database is locked" and the run stayed RUNNING (seen once in CI). Now the
    call completes, Terminated follows it, and the run closes KILLED with the metric kept.
    """
    import os
    import signal

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent = []

    def terminate_once(*_args):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated):
        with mlflow_store.run("r", "chain") as run:
            event.listen(Engine, "before_cursor_execute", terminate_once)
            try:
                run.log_metrics({"pass_at_1": 0.5}, step=0)
            finally:
                event.remove(Engine, "before_cursor_execute", terminate_once)
            pytest.fail("Terminated was not raised after the store call")
    assert sent
    assert _status(mlflow_store, run.run_id) == "KILLED"
    assert mlflow_store.client.get_metric_history(run.run_id, "pass_at_1")[0].value == 0.5
