"""A tiny SFT'd base model for the chain tests: tests/data/tiny_base, built by the real bootstrap code.

RL tests need a policy that sometimes passes: with a random model every reward is 0 and a
REINFORCE gradient is exactly 0, so no "the parameters changed" check could fail or pass
honestly. The band here is low (the real default is 10-35%) to keep the suite fast.

The model is committed (130 k parameters, 0.6 MB) rather than built in each test session: the
build took about 2 minutes of a CI worker, and the same bootstrap code gives different weights
on different machines, so recorded curves (test_behaviour_unchanged.py) could only be checked
where they were recorded. Rebuild it with ``python -m tests.chain.conftest`` (it trains
``TINY_BASE`` below) and re-record the curves if you do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfregress.bootstrap import BootstrapConfig

TINY_BASE = BootstrapConfig(seed=0, band_low=0.05, band_high=1.0, vocab_size=512, hidden_size=64,
                            layers=2, heads=4, kv_heads=2, intermediate_size=192, batch_size=32,
                            lr=3e-3, max_steps=1500, eval_every=100, eval_tasks=48, eval_samples=2,
                            max_new_tokens=64, register=False)

# Small enough to run a whole chain in seconds; every condition draws batch_size x group_size.
TINY_CHAIN = dict(campaigns=2, steps=2, batch_size=4, group_size=2, eval_tasks=12, eval_samples=2,
                  max_new_tokens=64, lr=1e-3, workers=2, fisher_samples=4, report_tasks=6, report_samples=1)


TINY_BASE_FOLDER = Path(__file__).resolve().parents[1] / "data" / "tiny_base"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """A copy of tests/data/tiny_base (held-out pass@1 at least 5%), one per test process, so that
    no test can change the committed folder."""
    folder = tmp_path_factory.mktemp("tiny_base") / "model"
    shutil.copytree(TINY_BASE_FOLDER, folder)
    return str(folder)


def build_tiny_base(out: Path) -> float:
    """Train ``TINY_BASE`` with the real bootstrap code (a scratch sqlite store) and save it to
    ``out``; returns its held-out pass@1 (at least ``band_low``)."""
    import tempfile

    import torch

    from grader import Grader
    from selfregress.bootstrap import train_base
    from selfregress.tracking import connect

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch}/bootstrap.db"
        torch.set_num_threads(1)
        store = connect("bootstrap")
        with store.run("bootstrap", "bootstrap") as run, Grader(workers=2) as grader:
            policy, pass_at_1, steps = train_base(TINY_BASE, run, grader, log=print)
    assert pass_at_1 >= TINY_BASE.band_low
    policy.save(out)
    return pass_at_1


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


if __name__ == "__main__":   # python -m tests.chain.conftest: rebuild tests/data/tiny_base
    shutil.rmtree(TINY_BASE_FOLDER, ignore_errors=True)
    print(f"tiny base rebuilt in {TINY_BASE_FOLDER}: pass@1 {build_tiny_base(TINY_BASE_FOLDER):.3f}; "
          "re-record tests/chain/curves_recorded.json (see test_behaviour_unchanged.py)")
