"""Shared fixtures. Every MLflow test gets its own real sqlite store in a temp dir."""

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# torch in the test processes (and the CLIs they start, whose default --threads reads it): one
# thread each. xdist already runs one process per core, and the tiny model's small ops ran 2x
# slower on 2 threads than on 1 beside a busy neighbour (a tiny grpo chain: 52 s against 25 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one torch thread, whatever a test before it set (OMP_NUM_THREADS above is
    only the start value): tiny models run far faster on one thread than on two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def empty_store_file(tmp_path_factory) -> Path:
    """An empty sqlite tracking store with MLflow's schema, made once per test session.

    Creating a store runs MLflow's alembic migrations (1-2 s); a copy of this file is the same
    empty store in about 1 ms, and MLflow still checks its schema version when it opens it.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty_store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


def copy_empty_store(empty_store_file: Path, db: Path) -> None:
    """A new store at ``db``, as MLflow would create it with ``db``'s folder as working dir."""
    shutil.copyfile(empty_store_file, db)
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # Default's artifacts: beside db
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (str(db.parent / "mlruns" / "0"),))


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, empty_store_file):
    """A fresh sqlite tracking store (and registry), with artifacts under tmp_path."""
    monkeypatch.chdir(tmp_path)
    copy_empty_store(empty_store_file, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    from selfregress.tracking import connect

    return connect("test")


# The modules that use the tiny base model (tests/chain), longest first, as measured. Under
# pytest-xdist (--dist loadscope hands out whole modules in collection order) the first one
# starts the one build of the tiny base on one worker while the other worker runs the modules
# that need no model; the rest of the chain modules follow, longest first.
_CHAIN_MODULES_LONGEST_FIRST = ("test_sweep_report_promote.py", "test_postgres_server.py",
                                "test_tracking_server.py", "test_resume_and_errors.py", "test_tune.py",
                                "test_serving.py", "test_chain.py", "test_controllers_chain.py",
                                "test_accelerate.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        if item.path.parent.name != "chain":
            return 1
        name, longest = item.path.name, _CHAIN_MODULES_LONGEST_FIRST
        order = longest.index(name) if name in longest else len(longest)
        return 0 if order == 0 else 2 + order

    items.sort(key=rank)  # stable: a module's own tests keep their order
