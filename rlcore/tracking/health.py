"""Whether an MLflow store's error can heal by waiting, and the retry that waits only then.

A lock, a refused or timed-out connection, an HTTP 5xx heal; a damaged database, an old schema, an
auth failure or an HTTP 4xx do not, and stop at once as `StoreError` with what to do.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rlcore.tracking.store import StoreError

__all__ = [
    "HEALABLE",
    "PERMANENT",
    "StoreError",
    "first_line",
    "healable",
    "retry",
    "store_advice",
    "tracking_uri_text",
]


def first_line(err: BaseException, limit: int = 160) -> str:
    """An error's first line (its type name when it has no text), for one-line messages."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


PERMANENT = (
    "malformed",
    "not a database",
    "mlflow db upgrade",
    "out-of-date database schema",
    "no such table",
    "unauthorized",
    "unauthenticated",
    "permission_denied",
    "forbidden",
    "invalid_parameter_value",
    "resource_does_not_exist",
    "error code 4",
)
HEALABLE = (
    "database is locked",
    "connection refused",
    "failed to establish a new connection",
    "max retries exceeded",
    "timed out",
    "timeout",
    "temporarily unavailable",
    "connection reset",
    "connection aborted",
    "remote end closed",
    "error code 5",
    "bad gateway",
    "service unavailable",
)


def healable(err: BaseException) -> bool:
    """Whether waiting can fix a store error: a lock, a refused or timed-out connection, an HTTP
    5xx. A damaged database, an old schema, an auth failure or an HTTP 4xx cannot."""
    text = f"{type(err).__name__}: {err}".lower()
    return not any(p in text for p in PERMANENT) and (
        any(h in text for h in HEALABLE) or isinstance(err, (ConnectionError, TimeoutError))
    )


def store_advice(err: BaseException) -> str:
    """One line: the store, what is wrong with it and what to do."""
    uri, text = tracking_uri_text(), first_line(err, 160)
    low = str(err).lower()
    if "upgrade" in low or "out-of-date" in low:
        db = uri if uri.startswith(("sqlite", "postgres", "mysql")) else "<store uri>"
        return f"MLflow store {uri} is on an older schema: run `mlflow db upgrade {db}` ({text})"
    if "malformed" in low or "not a database" in low or "no such table" in low:
        return (
            f"MLflow store {uri} is damaged ({text}): move the file aside (for example "
            "`mv mlflow.db mlflow.db.broken`) and run again to start a new store"
        )
    if not healable(err):
        return f"MLflow store {uri} refused the request ({text}): check MLFLOW_TRACKING_URI and its credentials"
    return f"MLflow store {uri} stayed unreachable ({text}): start it (or unset MLFLOW_TRACKING_URI) and run again"


def tracking_uri_text() -> str:
    """The store's URI as set (MLFLOW_TRACKING_URI or the workspace's SQLite file), for messages."""
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:  # noqa: BLE001 - a message must not fail
        return os.environ.get("MLFLOW_TRACKING_URI", "the MLflow store")


def retry(call: Callable[[], Any], what: str, timeout_s: float = 600.0, max_backoff_s: float = 30.0) -> Any:
    """Run an MLflow call, retrying with backoff while the store is away (up to timeout_s); an
    error that waiting cannot heal, or the timeout, raises `StoreError` at once."""
    deadline, delay = time.monotonic() + timeout_s, 1.0
    while True:
        try:
            return call()
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - network or store errors, sorted below
            if not healable(err) or time.monotonic() + delay > deadline:
                raise StoreError(store_advice(err)) from err
            first = first_line(err)
            print(f"mlflow: {what} failed ({first}); retrying in {delay:.0f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
