"""SIGTERM as an exception (``Terminated``), held back while a call to the tracking store is in flight.

A run cut by SIGTERM must close as KILLED, not stay RUNNING; but a signal raised in the middle
of a SQLAlchemy query can leave a sqlite lock behind, so that closing the run then fails.
``ShieldedClient`` wraps MLflow's client so that each call finishes before the signal lands.
"""

from __future__ import annotations

import contextlib
import signal
import time
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


# A read cut by a dying tracking server (its response broken off half-way: "Connection broken:
# IncompleteRead") is not retried by MLflow's HTTP retries, which cover connecting and status
# codes only. A read is safe to repeat, so it is tried again while the server comes back; a
# write is not (a metric logged twice), and is left to MLflow's own retries.
READ_PREFIXES = ("get_", "search_")
READ_RETRY_DELAYS = (1, 2, 4, 8, 15, 30)


BROKEN_OFF = ("IncompleteRead", "Connection broken", "Connection aborted", "RemoteDisconnected")


def broken_transfer(error: Exception) -> bool:
    """An HTTP answer broken off half-way. Not a refused connection ("Max retries exceeded"):
    MLflow's own retries have already waited for that one, and a server that stays away should
    fail the call, not hold it for another minute per retry."""
    message = str(error)
    return type(error).__name__ == "MlflowException" and "API request to" in message \
        and any(sign in message for sign in BROKEN_OFF) and "Max retries exceeded" not in message


class ShieldedClient:
    """An MlflowClient whose every method call runs as one `store_call`; reads are retried when
    the server breaks off its answer (``READ_RETRY_DELAYS``, about a minute in all)."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        delays = READ_RETRY_DELAYS if name.startswith(READ_PREFIXES) else ()

        def call(*args, **kwargs):
            for delay in (*delays, None):
                try:
                    with store_call():
                        return attr(*args, **kwargs)
                except Exception as error:
                    if delay is None or not broken_transfer(error):
                        raise
                time.sleep(delay)

        return call
