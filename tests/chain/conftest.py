"""A tiny SFT'd base model, built once per test session through the real bootstrap code.

RL tests need a policy that sometimes passes: with a random model every reward is 0 and a
REINFORCE gradient is exactly 0, so no "the parameters changed" check could fail or pass
honestly. The band here is low (the real default is 10-35%) to keep the suite fast.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from selfregress.bootstrap import BootstrapConfig

TINY_BASE = BootstrapConfig(seed=0, band_low=0.05, band_high=1.0, vocab_size=512, hidden_size=64,
                            layers=2, heads=4, kv_heads=2, intermediate_size=192, batch_size=32,
                            lr=3e-3, max_steps=1500, eval_every=100, eval_tasks=48, eval_samples=2,
                            max_new_tokens=64, register=False)

# Small enough to run a whole chain in seconds; every condition draws batch_size x group_size.
TINY_CHAIN = dict(campaigns=2, steps=2, batch_size=4, group_size=2, eval_tasks=12, eval_samples=2,
                  max_new_tokens=64, lr=1e-3, workers=2, fisher_samples=4, report_tasks=6, report_samples=1)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """A save_pretrained folder of a tiny Qwen2 whose held-out pass@1 is at least 5%.

    Built once per test session: under pytest-xdist the workers share one copy, made by the
    first worker that needs it while the others wait on a file lock.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, common to every worker
    folder = shared / "tiny_base"
    with FileLock(str(folder) + ".lock"):
        if not (folder / "built").is_file():
            _build_tiny_base(folder)
            (folder / "built").touch()
    return str(folder / "model")


def _build_tiny_base(folder) -> None:
    import torch

    from grader import Grader
    from selfregress.bootstrap import train_base
    from selfregress.tracking import connect

    folder.mkdir(exist_ok=True)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/bootstrap.db"
    try:
        torch.set_num_threads(1)
        store = connect("bootstrap")
        with store.run("bootstrap", "bootstrap") as run, Grader(workers=2) as grader:
            policy, pass_at_1, steps = train_base(TINY_BASE, run, grader, log=lambda m: None)
        assert pass_at_1 >= TINY_BASE.band_low
        policy.save(folder / "model")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture
def cli_store(mlflow_store):
    """The store and experiment that ``python -m selfregress`` writes to (same sqlite file)."""
    from selfregress.tracking import connect

    return connect("selfregress")


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m selfregress ...`` as a user would."""
    return subprocess.run([sys.executable, "-m", "selfregress", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def as_options(values: dict) -> list[str]:
    return [item for k, v in values.items() for item in (f"--{k}", str(v))]


# ---- servers started by a test (mlflow server, mlflow models serve) ----------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log_file, seconds: float) -> None:
    """Until ``url`` answers 200, failing with the server's log if it dies or takes too long."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None, log_file.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{url} did not answer in {seconds:.0f} s"
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen, url: str) -> None:
    """Stop a server started with ``start_new_session`` by its PID: SIGTERM to its process group,
    SIGKILL to whatever of the group is left (a worker outlives its parent for a moment), then
    wait until ``url`` refuses connections (10 s at most)."""
    import contextlib
    import signal
    import time
    import urllib.request

    with contextlib.suppress(ProcessLookupError):   # it may have died on its own
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
        except OSError:
            return
        time.sleep(0.2)
