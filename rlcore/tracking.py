"""MLflow conventions: where runs go, how they are named and tagged, which metric names exist.

One store per repository: `sqlite:///<repo>/mlflow.db`, the store `mlflow ui` opens at the repo root
(MLflow >= 3.7), with artifacts in `<repo>/mlartifacts`. `<repo>` is DVC_ROOT when DVC runs a
stage, also in a queued or temporary experiment whose own workspace lies under
`<repo>/.dvc/tmp/exps/`; elsewhere the working directory. Stage outputs go to the workspace the
stage runs in; only the store is shared. MLFLOW_TRACKING_URI points everything at a tracking
server instead; MLFLOW_EXPERIMENT_NAME picks the experiment (default "rlcore").
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from rlcore.config import Params
from rlcore.store import store_root, tracking_uri

EXPERIMENT = "rlcore"
# the per-iteration metrics; pipeline runs, sb3 runs and tuning trials all use these names
ITERATION_METRICS = (
    "fps",
    "success_rate",
    "episode_return",
    "curriculum_level",
    "learning_rate",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "grad_norm",
    "rollout_s",
    "update_s",
    "peak_memory_mb",
)


def setup(root: Path | None = None) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    root = root or store_root()
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(root))
    if user_uri is None:  # set_tracking_uri exports the variable; keep the user's environment as it was
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None if user_uri else (root / "mlartifacts").resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another process created it first
        return mlflow.get_experiment_by_name(name).experiment_id


def client(root: Path | None = None) -> Any:
    """An MlflowClient bound to the store (never to MLflow's process-wide default)."""
    from mlflow.tracking import MlflowClient

    setup(root)
    return MlflowClient(tracking_uri=tracking_uri(root))


def git_info(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def run_name(params: Params, device: str) -> str:
    """Human-readable: algo-backend-device-lr-seed-time, e.g. rlcore-batched-cpu-lr1e-03-s0-0712."""
    t = params.train
    stamp = time.strftime("%m%d-%H%M%S")
    return f"{t.algo}-{params.env.backend}-{device.replace(':', '')}-lr{t.learning_rate:.0e}-s{params.seed}-{stamp}"


def run_tags(params: Params, stage: str, device: str) -> dict[str, str]:
    """Tags of every run; a DVC experiment's name and baseline commit when DVC runs one."""
    tags = {
        **git_info(Path.cwd()),
        "dvc_stage": stage,
        "params_hash": params.section_hash(),
        "device": device,
        "backend": params.env.backend,
        "algo": params.train.algo,
    }
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


def clean_metrics(row: dict[str, Any]) -> dict[str, float]:
    """Known metric names with finite values only (MLflow rejects NaN in some stores)."""
    out = {}
    for key in ITERATION_METRICS:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def log_params_once(client: Any, run_id: str, params: Params, extra: dict[str, Any] | None = None) -> None:
    """Flattened params (write-once in MLflow: skipped when the run already has them)."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    items = {**params.flat(), **(extra or {})}
    new = [Param(k, str(v)[:500]) for k, v in items.items() if k not in existing]
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start : start + 100])


def log_row(client: Any, run_id: str, row: dict[str, Any], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v in clean_metrics(row).items()]
    if metrics:
        client.log_batch(run_id, metrics=metrics)


class MetricBuffer:
    """Per-update rows written in batches (one MLflow call per `every_s` seconds, not per update)."""

    def __init__(self, client: Any, run_id: str, every_s: float = 2.0) -> None:
        self.client, self.run_id, self.every_s = client, run_id, every_s
        self.pending: list[Any] = []
        self.last = time.monotonic()

    def add(self, row: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in clean_metrics(row).items()]
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + 1000])
        self.pending = []
        self.last = time.monotonic()


def open_run(
    root: Path | None,
    params: Params,
    stage: str,
    device: str,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    extra_params: dict[str, Any] | None = None,
) -> str:
    """Start a new run (or reopen run_id, e.g. after a resume) with tags and params; returns its id.
    `root` holds the store (None: store_root())."""
    experiment_id = setup(root)
    store = client(root)
    if run_id is not None:
        try:
            store.get_run(run_id)
            store.update_run(run_id, status="RUNNING")
        except Exception:  # noqa: BLE001 - the run is gone (other store): start a new one
            run_id = None
    if run_id is None:
        tags = run_tags(params, stage, device)
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = store.create_run(experiment_id, run_name=run_name(params, device), tags=tags)
        run_id = run.info.run_id
    log_params_once(store, run_id, params, extra_params)
    return run_id


def end_run(run_id: str, status: str = "FINISHED", root: Path | None = None) -> None:
    client(root).set_terminated(run_id, status=status)
