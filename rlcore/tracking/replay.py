"""`python -m rlcore.tracking.replay out/mlflow_unsent.json`: a training whose MLflow store never
answered kept its params, tags and every metric in that file; this opens the run in the store that
answers now (MLFLOW_TRACKING_URI, or the workspace's mlflow.db), logs them all with their original
steps and timestamps, ends it FINISHED, and records its id in out/train.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlcore.config.schema import Params
from rlcore.runtime.files import write_json
from rlcore.tracking import runs as tracking


def replay(path: Path) -> str:
    """Log the run kept in `path` into the store; returns its run id."""
    from mlflow.entities import Metric

    record = json.loads(path.read_text())
    params = Params.model_validate(record["params"])
    run_id = tracking.retry(
        lambda: tracking.open_run(None, params, "train", record["device"], extra_params=record.get("extra_params")),
        "opening the MLflow run",
    )
    client = tracking.client()
    for key, value in record.get("tags", {}).items():
        tracking.retry(lambda k=key, v=value: client.set_tag(run_id, k, v), "tagging the run")
    metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in record["metrics"]]
    for start in range(0, len(metrics), 1000):
        chunk = metrics[start : start + 1000]
        tracking.retry(lambda c=chunk: client.log_batch(run_id, metrics=c), "logging the metrics")
    client.set_tag(run_id, "replayed_from", str(path))
    tracking.retry(lambda: tracking.end_run(run_id), "ending the run")
    train_json = path.parent / "train.json"
    if train_json.is_file():
        result = json.loads(train_json.read_text())
        if not result.get("run_id"):
            write_json(train_json, {**result, "run_id": run_id})
    path.replace(path.with_suffix(".replayed.json"))
    return run_id


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m rlcore.tracking.replay out/mlflow_unsent.json (the file must exist)", file=sys.stderr)
        sys.exit(2)
    try:
        run_id = replay(Path(args[0]))
    except (tracking.StoreError, json.JSONDecodeError, KeyError, ValueError) as err:
        print(f"error: {args[0]}: {tracking.first_line(err, 300)}", file=sys.stderr)
        sys.exit(2)
    print(f"replayed {args[0]} into MLflow run {run_id}; runs table: {tracking.runs_url()}")


if __name__ == "__main__":
    main()
