"""A tracking-server outage loses nothing and stalls nothing: a real `mlflow server` on loopback
is killed mid-training and restarted on the same port and store; the run still gets every
metric, and training takes about as long as a run without the outage.

Server and training share this machine's 2 cores, and booting a server costs ~10 CPU-seconds.
So that the comparison measures the outage, not that boot, the calm runs boot a second server
(its own port and store) at the same moment: same load, no outage."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_PARAMS, child_env, copy_repo, free_port, stage, start_mlflow_server, stop_mlflow_server

PARAMS = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "total_steps": 600_000, "checkpoint_every": 1000}}


def start_server(store: Path, port: int) -> subprocess.Popen:
    return start_mlflow_server(f"sqlite:///{store / 'server.db'}", port, store, store / "artifacts")


def train(repo: Path, uri: str, server: subprocess.Popen, store: Path, port: int, outage: bool) -> dict:
    """Train against `uri`; once its first metrics reach the server, kill the server (outage) or
    not; 8 s later boot a server: the same one again (outage) or a bystander on another port and
    store (calm)."""
    env = {**child_env(), "MLFLOW_TRACKING_URI": uri}
    started_ms = int(time.time() * 1000)
    proc = subprocess.Popen(
        [sys.executable, "stages/train.py"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_for_training(uri, started_ms, proc)
    if outage:
        stop_mlflow_server(server)
    time.sleep(8)  # the server is away, or not
    if outage:
        server = start_server(store, port)
    else:
        bystander_store = store.with_name(f"bystander-{time.monotonic_ns()}")
        bystander_store.mkdir()
        stop_mlflow_server(start_server(bystander_store, free_port()))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out.decode()[-3000:]
    result = json.loads((repo / "out" / "train.json").read_text())
    result["log"] = out.decode()
    result["server"] = server
    return result


def wait_for_training(uri: str, started_ms: int, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until the run this training opened has metrics on the server: training is under way (the
    stage's start, its imports and its first MLflow calls, take a varying time on a busy machine)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            experiment = client.get_experiment_by_name("rlcore")
            if experiment is not None:
                runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {started_ms}")
                if any("fps" in r.data.metrics for r in runs):
                    return
        except Exception:  # noqa: BLE001 - the server is busy: ask again
            pass
        time.sleep(0.5)
    raise AssertionError("training sent no metrics to the server")


@pytest.mark.slow
@pytest.mark.serial  # compares wall times: nothing else may share the cores
def test_killed_and_restarted_server_loses_no_metric(tmp_path):
    from mlflow.tracking import MlflowClient

    (tmp_path / "repo").mkdir()
    repo = copy_repo(tmp_path / "repo", PARAMS, git=False)
    stage("targets", repo)
    stage("hardware", repo)
    store, port = tmp_path / "server", free_port()
    store.mkdir()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(store, port)
    try:
        # alternating rounds on a shared, noisy machine: calm, with the outage, calm again
        calm = [train(repo, uri, server, store, port, outage=False)]
        stormy = train(repo, uri, server, store, port, outage=True)
        server = stormy["server"]
        calm.append(train(repo, uri, server, store, port, outage=False))
        assert "sending metrics failed" in stormy["log"]  # the outage did happen mid-training
        client = MlflowClient(uri)
        with (repo / "out" / "train_curve.csv").open() as f:
            steps = [int(row["step"]) for row in csv.DictReader(f)]
        run = client.get_run(stormy["run_id"])
        assert run.info.status == "FINISHED"
        for key in ("fps", "policy_loss", "update_s"):
            history = sorted(m.step for m in client.get_metric_history(stormy["run_id"], key))
            assert history == steps, f"{key}: {len(history)} values for {len(steps)} updates"
        calm_s = [c["wall_s"] for c in calm]
        print(f"training wall time: {calm_s} s without the outage, {stormy['wall_s']:.1f} s with it")
        assert stormy["wall_s"] <= 1.10 * max(calm_s)  # within 10% of a calm run of the same hour
    finally:
        stop_mlflow_server(server)
