"""A training's MLflow run, from open to finish, as one context manager.

    with TrainingRun(params, root, device, extra) as tracked:
        result = train(..., tracked.on_start, tracked.on_iteration)
        tracked.finish(metrics, artifacts)

`on_start` opens the run when the algorithm starts (or reopens the one a resumed checkpoint
names), tags what the algorithm chose, and starts a background sender so the store never stalls
training. A store that is away at the start does not hold training back: the run opens when it
answers, and a store that never does leaves every metric in out/mlflow_unsent.json for
`python -m rlcore.tracking.replay`. Leaving the block on an error ends the run FAILED, on Ctrl-C
KILLED, after delivering the metrics queued so far. Every call is retried while the store is away;
a store that waiting cannot heal (damaged, old schema, refusing access) stops at once.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from rlcore.config.schema import Params
from rlcore.runtime.files import write_json
from rlcore.tracking import runs as tracking

OPEN_WAIT_S = 10.0  # at the start, wait this long for the store before training without it
END_WAIT_S = 60.0  # at the end, wait this long for a store that never answered, then keep the metrics in a file


class TrainingRun:
    """The MLflow run of one training (the train stage's; tuning trials and benchmarks log their own)."""

    def __init__(self, params: Params, root: Path, device: str, extra_params: dict[str, Any]) -> None:
        self.params, self.root, self.device, self.extra_params = params, root, device, extra_params
        self.client = tracking.retry(tracking.client, "connecting to the MLflow store")
        self.run_id: str | None = None
        self.sender: tracking.MetricSender | None = None
        self.unsent_path = root / "out" / "mlflow_unsent.json"
        self._opened = threading.Event()
        self._give_up = threading.Event()
        self._open_error: BaseException | None = None
        self._opener: threading.Thread | None = None
        self._tags: dict[str, str] = {}
        self._system: tracking.SystemMetrics | None = None

    def on_start(self, run: Any, note: str | None) -> None:
        """Open (or reopen) the run before the first update; `run` is the algorithm's RunHandle. A
        store that is away at the start does not hold training back: the run opens in the
        background when the store answers, and the metrics wait for it."""
        if note:
            print(f"  - {note}")
        for key, value in run.tags.items():
            if value:
                print(f"  - {key}: {value}")
                self._tags[key] = value
        self.sender = tracking.MetricSender(self.client, None)
        for row in run.history:  # a killed run's updates it had not sent yet
            self.sender.add(row, int(row["step"]))
        self._opener = threading.Thread(target=self._open, args=(run,), name="mlflow-open", daemon=True)
        self._opener.start()
        if not self._opened.wait(OPEN_WAIT_S):
            if self._open_error is not None:  # waiting cannot heal it: stop now, with what to do
                raise self._open_error
            print(
                f"mlflow: the store {tracking.tracking_uri_text()} does not answer; training goes on and the run "
                "opens when it does (metrics wait in memory)",
                file=sys.stderr,
                flush=True,
            )
        elif self._open_error is not None:
            raise self._open_error

    def _open(self, run: Any) -> None:
        """Open the run (retrying while the store is away), log its dataset and tags, attach the sender."""
        previous = run.extra.get("run_id")
        delay = 1.0
        while not self._give_up.is_set():
            try:
                run_id = tracking.open_run(
                    None, self.params, "train", self.device, previous, extra_params=self.extra_params
                )
                if previous != run_id:  # a new run: the target cache it trains on is its dataset
                    cache = Path(self.params.targets.path)
                    tracking.log_dataset(run_id, cache if cache.is_absolute() else self.root / cache)
                for key, value in self._tags.items():
                    self.client.set_tag(run_id, key, value)
                # a resumed run recomputes the updates after its checkpoint: keep the values already logged
                logged = tracking.last_logged_step(self.client, run_id) if previous == run_id else -1
            except Exception as err:  # noqa: BLE001 - sorted: heal by waiting, or stop
                if not tracking.healable(err):
                    self._open_error = tracking.StoreError(tracking.store_advice(err))
                    self._opened.set()
                    return
                self._give_up.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.run_id = run.extra["run_id"] = run_id
            self.sender.attach(run_id, skip_through=logged)
            self._system = tracking.SystemMetrics(run_id)
            self._opened.set()
            return

    def on_iteration(self, row: dict[str, float]) -> None:
        if self.sender is not None:
            self.sender.add(row, int(row["step"]))

    def _deliver(self, final: dict[str, float] | None = None) -> bool:
        """Send the queued metrics (retried while the store is away); True when the run is open.
        A run that never opened keeps every metric in out/mlflow_unsent.json for `python -m
        rlcore.tracking.replay`."""
        if self.sender is None:
            return self.run_id is not None
        if not self._opened.wait(END_WAIT_S if self._opener is not None else 0):
            self._give_up.set()
            self.sender.close_timeout_s = 0.0
        unsent = self.sender.close()
        if self.run_id is None and (self.sender.take_pending() or final):
            rows = [[m.key, m.value, m.timestamp, m.step] for row in self.sender.take_pending() for m in row]
            rows += [[k, float(v), 0, 0] for k, v in (final or {}).items()]
            record = {
                "params": self.params.model_dump(),
                "device": self.device,
                "extra_params": self.extra_params,
                "tags": self._tags,
                "metrics": rows,
            }
            write_json(self.unsent_path, record)
            print(
                f"warning: the MLflow store {tracking.tracking_uri_text()} never answered: {len(rows)} metrics kept in "
                f"{self.unsent_path}; when it is back, `python -m rlcore.tracking.replay {self.unsent_path}`",
                file=sys.stderr,
            )
        elif unsent:
            print(f"warning: {unsent} metrics could not be sent to MLflow run {self.run_id}", file=sys.stderr)
        self.sender = None
        return self.run_id is not None

    def finish(self, metrics: dict[str, float], artifacts: list[tuple[Path, str]]) -> None:
        """Deliver the metrics, log the results and artifacts, end the run FINISHED."""
        if not self._deliver(metrics):
            return
        self._stop_system_metrics()
        run_id = self.run_id
        for key, value in metrics.items():
            value = tracking.readable(float(value))
            tracking.retry(lambda k=key, v=value: self.client.log_metric(run_id, k, v), f"logging {key}")
        for path, artifact_path in artifacts:
            tracking.retry(
                lambda p=path, a=artifact_path: self.client.log_artifact(run_id, str(p), a), f"logging {path.name}"
            )
        tracking.retry(lambda: tracking.end_run(run_id), "ending the MLflow run")

    def _stop_system_metrics(self) -> None:
        if self._system is not None:
            self._system.stop()
            self._system = None

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            return
        self._give_up.set()
        self._deliver()
        self._stop_system_metrics()
        if self.run_id is not None:
            status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
            tracking.retry(lambda: tracking.end_run(self.run_id, status), "ending the MLflow run")
