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
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rlcore.config.schema import Params
from rlcore.tracking.health import (  # noqa: F401 - the retry API, as callers know it: tracking.retry
    HEALABLE,
    PERMANENT,
    first_line,
    healable,
    retry,
    store_advice,
    tracking_uri_text,
)
from rlcore.tracking.sender import ITERATION_METRICS, MetricSender, clean_metrics  # noqa: F401 - as tracking.*
from rlcore.tracking.store import StoreError, store_root, tracking_uri

EXPERIMENT = "rlcore"


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
    """An MlflowClient bound to the store (never to MLflow's process-wide default). It acts on
    existing runs; open_run (through setup) makes sure the experiment exists."""
    from mlflow.tracking import MlflowClient

    if tracking_uri(root).startswith(("http://", "https://")):
        # rlcore retries outages itself (MetricSender, retry), off the training loop: MLflow's
        # own long HTTP retries would only delay that; a user's explicit setting wins
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    return MlflowClient(tracking_uri=tracking_uri(root))


def git_info(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    # MLflow's own source tags: the runs table's Source column and the run page show them
    return {"mlflow.source.git.commit": commit, "git_dirty": str(bool(dirty)).lower()}


def source_name(stage: str) -> str:
    """What started the run, for mlflow.source.name: the stage script, or the command."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    try:
        if script is not None and script.is_file() and script.name != "__main__.py":
            return script.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:  # a script outside the workspace
        pass
    commands = {"seeds": "python -m rlcore.bench seeds", "notebook": "notebooks/reach.ipynb"}
    return commands.get(stage, f"stages/{stage}.py")


def run_name(params: Params, device: str) -> str:
    """Human-readable: algo-backend-device-lr-seed-time, e.g. rlcore-batched-cpu-lr1e-03-s0-0712."""
    t = params.train
    stamp = time.strftime("%m%d-%H%M%S")
    return f"{t.algo}-{params.env.backend}-{device.replace(':', '')}-lr{t.learning_rate:.0e}-s{params.seed}-{stamp}"


def run_tags(params: Params, stage: str, device: str) -> dict[str, str]:
    """Tags of every run; a DVC experiment's name and baseline commit when DVC runs one."""
    tags = {
        **git_info(Path.cwd()),
        "mlflow.source.name": source_name(stage),
        "mlflow.source.type": "LOCAL",
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


def log_params_once(client: Any, run_id: str, params: Params, extra: dict[str, Any] | None = None) -> None:
    """Flattened params (write-once in MLflow: skipped when the run already has them)."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    items = {**params.flat(), **(extra or {})}
    new = [Param(k, str(v)[:500]) for k, v in items.items() if k not in existing]
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start : start + 100])


def last_logged_step(store: Any, run_id: str, key: str = "fps") -> int:
    """The last step of `key` in the run (-1 if none): where a killed run's metrics stopped."""
    history = retry(lambda: store.get_metric_history(run_id, key), "reading the run's metrics")
    return max((m.step for m in history), default=-1)


# what a store's errors say when waiting cannot help, and when it can (matched lower-case)
def check_run(run_id: str, timeout_s: float = 10.0) -> bool:
    """Before a stage's work: is the run's store usable? `StoreError` at once when waiting cannot
    heal it (damaged, old schema, refused); False (and a note) when it is away, True when it answers."""
    try:
        retry(lambda: client().get_run(run_id), "reaching the MLflow store", timeout_s=timeout_s)
    except StoreError as err:
        if err.__cause__ is not None and not healable(err.__cause__):
            raise
        print(f"mlflow: {err}; the results are logged when it answers", file=sys.stderr, flush=True)
        return False
    return True


def readable(value: float) -> float:
    """A result as the runs table should show it: four significant digits (0.6433, 303.5), whole
    numbers as they are. The exact figures stay in the stage's JSON (out/eval.json, ...)."""
    return value if not math.isfinite(value) or value == int(value) else float(f"{value:.4g}")


def log_results(
    run_id: str,
    metrics: dict[str, float],
    artifacts: list[tuple[Path, str]],
    tags: dict[str, str] | None = None,
    what: str = "results",
) -> None:
    """A stage's results into an existing run: metrics in one batch (rounded for reading), then
    artifacts (files or directories, each under its artifact path) and tags; each call retried
    while the store is away."""
    from mlflow.entities import Metric, RunTag

    store = retry(client, "connecting to the MLflow store")
    now = int(time.time() * 1000)
    batch = [Metric(k, readable(float(v)), now, 0) for k, v in metrics.items() if math.isfinite(float(v))]
    retry(lambda: store.log_batch(run_id, metrics=batch, tags=[RunTag(k, v) for k, v in (tags or {}).items()]), what)
    for path, artifact_path in artifacts:
        log = store.log_artifacts if path.is_dir() else store.log_artifact
        retry(lambda log=log, path=path, artifact_path=artifact_path: log(run_id, str(path), artifact_path), what)


def log_table(run_id: str, columns: dict[str, list[Any]], artifact_file: str, what: str = "a table") -> None:
    """A table artifact (MLflow's `log_table`: the run's Artifacts tab shows it as a table)."""
    store = retry(client, "connecting to the MLflow store")
    retry(lambda: store.log_table(run_id, data=columns, artifact_file=artifact_file), what)


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


def log_dataset(run_id: str, path: Path, context: str = "training") -> str:
    """The target cache as the run's dataset input (the runs table's Dataset column): named after
    the file, digested by its MD5, which is the md5 DVC records for it in dvc.lock."""
    import hashlib
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    digest = hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - a content digest, as DVC's
    source = json.dumps({"uri": path.resolve().as_uri()})
    dataset = Dataset(name=path.name, digest=digest, source_type="local", source=source)
    entity = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])
    retry(lambda: client().log_inputs(run_id, datasets=[entity]), "logging the dataset")
    return digest


VIEW = "rlcore"  # the shared view of the runs table: the columns that tell runs apart
VIEW_COLUMNS = [  # short names (view_metrics) that the UI's default column width shows whole
    "metrics.`heldout`",
    "metrics.`heldout_lo`",
    "metrics.`heldout_hi`",
    "metrics.`at_5mm`",
    "metrics.`at_1mm`",
    "metrics.`train_s`",
    "params.`train.algo`",
    "params.`train.total_steps`",
]
VIEW_NAMES = {  # the runs table's short column -> the stage metric it repeats
    "heldout": "eval_success_rate",
    "heldout_lo": "eval_success_rate_ci_low",
    "heldout_hi": "eval_success_rate_ci_high",
    "at_5mm": "eval_within_5mm",
    "at_1mm": "eval_within_1mm",
    "train_s": "train_wall_s",
}


def view_metrics(logged: dict[str, float]) -> dict[str, float]:
    """The short-named copies of the metrics the runs table shows first: at the UI's default
    column width `eval_success_rate`, its `_ci_low` and `_ci_high` all read `eval_success_r...`."""
    return {short: logged[name] for short, name in VIEW_NAMES.items() if name in logged}


UI_DEFAULT = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store unless told otherwise


def ui_address() -> str:
    """The MLflow UI's address for the store in use: a tracking server's own (its host and port,
    from the tracking URI); for a local store (sqlite, a folder), `$RLCORE_UI_URL` where the user
    runs `mlflow ui` elsewhere (`mlflow ui --port 5001` -> http://127.0.0.1:5001), else the
    address `mlflow ui` serves by default."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return (os.environ.get("RLCORE_UI_URL") or UI_DEFAULT).rstrip("/")


def runs_url(experiment_id: str | None = None) -> str:
    """The MLflow UI's runs table for the experiment at `ui_address()`, opened on a shared view that
    shows held-out success and the main params as columns. The view is an experiment tag
    (`mlflow.sharedViewState.rlcore`), what the UI's own Share button writes."""
    import json

    base = ui_address()
    try:
        experiment_id = experiment_id or setup()
        state = {"selectedColumns": VIEW_COLUMNS, "orderByKey": "attributes.start_time", "orderByAsc": False}
        tag = f"mlflow.sharedViewState.{VIEW}"
        client().set_experiment_tag(experiment_id, tag, json.dumps(state))
    except Exception:  # noqa: BLE001 - an address to print must not fail (the store may be away)
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW}"


SYSTEM_EVERY_S = 10.0  # seconds between system-metric samples (CPU, memory; GPU where pynvml is)


class SystemMetrics:
    """MLflow's own system-metrics monitor on a run (`system/cpu_utilization_percentage`, memory,
    and GPU use where nvidia-ml-py is installed), shown in the run's System metrics tab. Never
    fails the run: a monitor that cannot start is skipped, and stopping waits at most a few seconds."""

    def __init__(self, run_id: str) -> None:
        self.monitor: Any = None
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self.monitor = SystemMetricsMonitor(
                run_id, sampling_interval=SYSTEM_EVERY_S, resume_logging=True, tracking_uri=tracking_uri()
            )
            self.monitor.start()
        except Exception:  # noqa: BLE001 - psutil missing, an old MLflow: the run goes on without it
            self.monitor = None

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop the monitor and log what it sampled since its last publication (a run shorter than
        SYSTEM_EVERY_S still gets one point)."""
        if self.monitor is None:
            return
        monitor = self.monitor

        def finish() -> None:
            monitor.finish()
            try:
                last = monitor.aggregate_metrics()
                if last:
                    monitor.publish_metrics(last)
                    monitor.mlflow_logger.flush()
            except Exception:  # noqa: BLE001 - the run's own results matter more than this point
                pass

        stopper = threading.Thread(target=finish, daemon=True, name="mlflow-system-stop")
        stopper.start()
        stopper.join(wait_s)  # its last call may wait on a store that went away: never hold the stage
        self.monitor = None


def end_run(run_id: str, status: str = "FINISHED", root: Path | None = None) -> None:
    client(root).set_terminated(run_id, status=status)
