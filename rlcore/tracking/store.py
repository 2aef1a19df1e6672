"""Where MLflow runs are stored, said once: the repository's own store, shared by every DVC
experiment of it, and the lock that lets one stage at a time write to it when it is SQLite.

Stage outputs go to the workspace the stage runs in (rlcore.pipeline.cli.workspace); a queued or
temporary experiment runs in a workspace of its own under `<repo>/.dvc/tmp/exps/`, yet its
MLflow run belongs in `<repo>/mlflow.db`, where `mlflow ui` at the repo root looks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StoreError(RuntimeError):
    """An MLflow store that waiting will not heal (damaged, on an old schema, refusing access), or
    one that stayed away past the retry timeout; said in one line with what to do."""


def store_root() -> Path:
    """The repository whose mlflow.db holds every run: DVC_ROOT when DVC runs the stage (the
    original repository, also for queued and temporary experiments), else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the SQLite store in `root` (default: store_root())."""
    root = root or store_root()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


@contextmanager
def store_lock(stage: str) -> Iterator[None]:
    """One writer at a time on the SQLite store: a stage that logs holds this for its run, so
    experiments run in parallel (`dvc queue start -j 2`) take turns instead of corrupting runs.
    With a tracking server, one such stage at a time in this workspace (they share its checkpoints
    and outputs); DVC's experiments each run in a workspace of their own. A kernel file lock: a
    killed stage releases it."""
    from filelock import FileLock, Timeout

    if tracking_uri().startswith("sqlite:"):
        lock = FileLock(str(store_root() / "mlflow.db.lock"))
        why = (
            f"another stage that writes to the SQLite MLflow store {store_root() / 'mlflow.db'} (one writer at a "
            "time; set MLFLOW_TRACKING_URI to an `mlflow server` to run experiments in parallel)"
        )
    else:
        lock = FileLock(str(Path.cwd() / ".rlcore.lock"))
        why = f"another stage in this workspace ({Path.cwd()}: its checkpoints and outputs are shared)"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"{stage}: waiting for {why}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
