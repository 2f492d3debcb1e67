"""SIGTERM as an exception (``Terminated``), held back while a call to the tracking store is in flight.

A run cut by SIGTERM must close as KILLED, not stay RUNNING; but a signal raised in the middle
of a SQLAlchemy query can leave a sqlite lock behind, so that closing the run then fails.
``ShieldedClient`` wraps MLflow's client so that each call finishes before the signal lands.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that the run ends as KILLED and not RUNNING."""


# SIGTERM is raised as Terminated wherever the main thread is, except inside a call to the
# tracking store: raised in the middle of a SQLAlchemy query, it can leave a sqlite read lock
# behind, and closing the run as KILLED then fails with "database is locked" (the run stays
# RUNNING). Such a call finishes first, and Terminated is raised as it returns.
_store_calls = 0
_pending_signal: int | None = None


def install_sigterm_handler() -> None:
    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        global _pending_signal
        if _store_calls:
            _pending_signal = signum
            return
        raise Terminated(f"received signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


@contextlib.contextmanager
def store_call() -> Iterator[None]:
    """One call to the tracking store, not to be cut by SIGTERM (which waits until it returns)."""
    global _store_calls, _pending_signal
    _store_calls += 1
    try:
        yield
    finally:
        _store_calls -= 1
        if not _store_calls and _pending_signal is not None:
            signum, _pending_signal = _pending_signal, None
            raise Terminated(f"received signal {signum}")


class ShieldedClient:
    """An MlflowClient whose every method call runs as one `store_call`."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with store_call():
                return attr(*args, **kwargs)

        return call
