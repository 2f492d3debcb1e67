"""A read that a dying tracking server breaks off half-way is tried again; a write is not.

The server here is a real HTTP server on loopback that speaks just enough of MLflow's REST API:
its first answer to each request promises a body and closes the connection before sending it
(what a SIGKILLed `mlflow server` does mid-response: "Connection broken: IncompleteRead"),
later answers are whole. MLflow's own HTTP retries do not cover this failure.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from selfregress import interrupts
from selfregress.interrupts import ShieldedClient


class BreaksFirstAnswer(BaseHTTPRequestHandler):
    calls: dict[str, int] = {}

    def handle_one_request(self):
        self.close_connection = True
        super().handle_one_request()

    def answer(self):
        path = self.path.split("?")[0]
        self.calls[path] = self.calls.get(path, 0) + 1
        body = json.dumps({"metrics": [{"key": "pass_at_1", "value": 0.5, "timestamp": 1, "step": 3}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.calls[path] > 1:
            self.wfile.write(body)          # the first time: headers, then the connection drops

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def breaking_server():
    BreaksFirstAnswer.calls = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BreaksFirstAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_broken_off_read_is_tried_again(breaking_server, monkeypatch):
    monkeypatch.setattr(interrupts, "READ_RETRY_DELAYS", (0, 0))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    plain = MlflowClient(tracking_uri=breaking_server)
    with pytest.raises(MlflowException, match="IncompleteRead"):   # the failure, unshielded
        plain.get_metric_history("run", "pass_at_1")
    BreaksFirstAnswer.calls = {}
    (metric,) = ShieldedClient(MlflowClient(tracking_uri=breaking_server)).get_metric_history("run", "pass_at_1")
    assert (metric.step, metric.value) == (3, 0.5)
    assert BreaksFirstAnswer.calls == {"/api/2.0/mlflow/metrics/get-history": 2}


def test_a_broken_off_write_is_not_repeated(breaking_server, monkeypatch):
    monkeypatch.setattr(interrupts, "READ_RETRY_DELAYS", (0, 0))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException, match="IncompleteRead"):
        ShieldedClient(MlflowClient(tracking_uri=breaking_server)).log_metric("run", "pass_at_1", 0.5, step=3)
    assert sum(BreaksFirstAnswer.calls.values()) == 1


def test_a_refused_connection_is_not_retried_again(monkeypatch):
    """MLflow's own retries cover a server that is not there; the read fails after them."""
    import socket
    import time

    monkeypatch.setattr(interrupts, "READ_RETRY_DELAYS", (30,))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:          # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(MlflowException, match="Max retries exceeded"):
        ShieldedClient(MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")).get_metric_history("run", "pass_at_1")
    assert time.monotonic() - started < 20     # not the 30 s retry delay
