"""Training metrics to MLflow off the training loop: queued, sent in batches by a background
thread, retried with backoff while the store is away, never blocking an update."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rlcore.tracking.health import first_line

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
    "cpu_threads",  # rlcore PPO on the CPU: its share of the cores (rlcore.runtime.sharing)
    "q_loss",  # off-policy (SAC's critic, DQN's Q-network): per `train.log_every_steps`, as all their rows
    "ent_coef",  # SAC
    "exploration_rate",  # DQN's epsilon
    "heldout_twin_success_rate",  # `bench seeds`: the held-out score while training (twin, accurate physics)
    "train_s",  # `bench seeds`: training time at that score, scoring excluded
)


def clean_metrics(row: dict[str, Any]) -> dict[str, float]:
    """Known metric names with finite values only (MLflow rejects NaN in some stores)."""
    out = {}
    for key in ITERATION_METRICS:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class MetricSender:
    """Per-update metrics sent to MLflow from a background thread, so training never waits on it.

    Rows are batched (one call per `every_s` seconds), whole: a row's metrics are stored together
    or not at all. While the store or tracking server is away, sending is retried with
    exponential backoff up to `max_backoff_s` and the rows wait in memory; when it comes back, the
    run gets every metric. Retries are idempotent: a metric re-sent with its original timestamp is
    stored once. Rows at or before `skip_through` (the last step a killed run had logged, when a
    resumed run recomputes it) are not sent again, so the run keeps one value per metric and step.
    close() delivers what is left (waiting up to `close_timeout_s`) and returns the number of
    metrics it could not deliver.
    """

    def __init__(
        self,
        client: Any,
        run_id: str | None,
        every_s: float = 2.0,
        max_backoff_s: float = 30.0,
        close_timeout_s: float = 600.0,
        log: Callable[[str], None] | None = None,
        skip_through: int = -1,
    ) -> None:
        self.client, self.run_id, self.skip_through = client, run_id, skip_through
        self.every_s, self.max_backoff_s, self.close_timeout_s = every_s, max_backoff_s, close_timeout_s
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.pending: list[list[Any]] = []  # rows of metrics, oldest first
        self.sent = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any], step: int) -> None:
        """Queue one row's known, finite metrics at `step`; never blocks on MLflow."""
        from mlflow.entities import Metric

        if self.run_id is not None and step <= self.skip_through:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in clean_metrics(row).items()]
        if metrics:
            with self._lock:
                self.pending.append(metrics)

    def attach(self, run_id: str, skip_through: int = -1) -> None:
        """Give a sender started without a run (the store was away at the start) its run: the rows
        queued so far go to it, but those at or before `skip_through`."""
        with self._lock:
            self.run_id, self.skip_through = run_id, skip_through
            self.pending = [row for row in self.pending if row[0].step > skip_through]
        # the loop sends them at its next tick (every_s); _wake is for close() alone: set, it stays set

    def take_pending(self) -> list[list[Any]]:
        """The rows not sent (after close): what a replay file keeps."""
        with self._lock:
            return list(self.pending)

    def _send_pending(self) -> bool:
        """Send everything queued in whole rows, up to 1000 metrics a call (MLflow's batch
        limit); False on a failure, or while there is no run yet."""
        if self.run_id is None:
            return False
        while True:
            with self._lock:
                rows, size = 0, 0
                while rows < len(self.pending) and size + len(self.pending[rows]) <= 1000:
                    size += len(self.pending[rows])
                    rows += 1
                batch = [m for row in self.pending[:rows] for m in row]
            if not batch:
                return True
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as err:  # noqa: BLE001 - any store or network error: keep the rows, retry
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    first = first_line(err)
                    self.log(f"mlflow: sending metrics failed ({first}); training goes on, retrying")
                return False
            with self._lock:
                del self.pending[:rows]
                self.sent += len(batch)

    def _loop(self) -> None:
        delay = self.every_s
        deadline = None
        while True:
            self._wake.wait(delay)
            closing = self._closing
            if closing and deadline is None:
                deadline = time.monotonic() + self.close_timeout_s
            was_failing = self.failures > 0 and delay > self.every_s
            if self._send_pending():
                if was_failing:
                    self.log("mlflow: metrics sent again; nothing lost")
                delay = self.every_s
                if closing:
                    return
            else:
                delay = min(max(delay * 2, 1.0), self.max_backoff_s)
                if closing and time.monotonic() + delay > deadline:
                    return

    def close(self) -> int:
        """Deliver what is queued (retrying up to close_timeout_s); returns the metrics not sent."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        with self._lock:
            return sum(map(len, self.pending))
