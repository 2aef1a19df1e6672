"""A training's MLflow run, from open to finish, as one context manager.

    with TrainingRun(params, root, device, extra) as tracked:
        result = train(..., tracked.on_start, tracked.on_iteration)
        tracked.finish(metrics, artifacts)

`on_start` opens the run when the algorithm starts (or reopens the one a resumed checkpoint
names), tags what the algorithm chose, and starts a background sender so the store never stalls
training. Leaving the block on an error ends the run FAILED, on Ctrl-C KILLED, after delivering
the metrics queued so far. Every call is retried while the store is away.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from rlcore.config.schema import Params
from rlcore.tracking import runs as tracking


class TrainingRun:
    """The MLflow run of one training (the train stage's; tuning trials and benchmarks log their own)."""

    def __init__(self, params: Params, root: Path, device: str, extra_params: dict[str, Any]) -> None:
        self.params, self.root, self.device, self.extra_params = params, root, device, extra_params
        self.client = tracking.retry(tracking.client, "connecting to the MLflow store")
        self.run_id: str | None = None
        self.sender: tracking.MetricSender | None = None

    def on_start(self, run: Any, note: str | None) -> None:
        """Open (or reopen) the run before the first update; `run` is the algorithm's RunHandle."""
        if note:
            print(f"  - {note}")
        previous = run.extra.get("run_id")
        self.run_id = run_id = tracking.retry(
            lambda: tracking.open_run(
                None, self.params, "train", self.device, previous, extra_params=self.extra_params
            ),
            "opening the MLflow run",
        )
        run.extra["run_id"] = run_id
        if previous != run_id:  # a new run: the target cache it trains on is its dataset
            cache = Path(self.params.targets.path)
            tracking.log_dataset(run_id, cache if cache.is_absolute() else self.root / cache)
        for key, value in run.tags.items():
            if value:
                print(f"  - {key}: {value}")
                tracking.retry(lambda k=key, v=value: self.client.set_tag(run_id, k, v), "tagging the MLflow run")
        # a resumed run recomputes the updates after its checkpoint: keep the values already logged
        logged = tracking.last_logged_step(self.client, run_id) if previous == run_id else -1
        self.sender = tracking.MetricSender(self.client, run_id, skip_through=logged)
        for row in run.history:  # a killed run's updates it had not sent yet
            self.sender.add(row, int(row["step"]))

    def on_iteration(self, row: dict[str, float]) -> None:
        if self.sender is not None:
            self.sender.add(row, int(row["step"]))

    def _deliver(self) -> None:
        """Send the queued metrics (retried while the store is away); warn about any that could not go."""
        if self.sender is not None and (unsent := self.sender.close()):
            print(f"warning: {unsent} metrics could not be sent to MLflow run {self.run_id}", file=sys.stderr)
        self.sender = None

    def finish(self, metrics: dict[str, float], artifacts: list[tuple[Path, str]]) -> None:
        """Deliver the metrics, log the results and artifacts, end the run FINISHED."""
        self._deliver()
        run_id = self.run_id
        for key, value in metrics.items():
            tracking.retry(lambda k=key, v=value: self.client.log_metric(run_id, k, v), f"logging {key}")
        for path, artifact_path in artifacts:
            tracking.retry(
                lambda p=path, a=artifact_path: self.client.log_artifact(run_id, str(p), a), f"logging {path.name}"
            )
        tracking.retry(lambda: tracking.end_run(run_id), "ending the MLflow run")

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            return
        self._deliver()
        if self.run_id is not None:
            status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
            tracking.retry(lambda: tracking.end_run(self.run_id, status), "ending the MLflow run")
