"""Faults beyond the params file, through the real stage CLIs: damaged or foreign files, a broken or
absent tracking store, a full or read-only disk. Each stops with exit code 2 and at most two
lines, no traceback, nothing written or half-written, no MLflow run left RUNNING; or, where
waiting or carrying on is the right answer, nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import child_env, copy_repo, free_port, stage, start_mlflow_server, stop_mlflow_server
from tests.test_cli_errors import snapshot


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repo copy with its targets, hardware decision (CPU), a tiny trained model and its evaluation."""
    root = copy_repo(tmp_path_factory.mktemp("faults"), git=False)
    for name in ("targets", "hardware", "train", "evaluate"):
        stage(name, root)
    return root


def truncate(path: str) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        data = (repo / path).read_bytes()
        (repo / path).write_bytes(data[: len(data) // 2])

    return damage


def old_schema(repo: Path) -> None:
    with sqlite3.connect(repo / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")  # MLflow's first migration


def edit_policy(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        path = repo / "models" / "policy.pt"
        bundle = torch.load(path, weights_only=True)
        change(bundle)
        torch.save(bundle, path)

    return damage


def nan_weights(bundle: dict) -> None:
    for tensor in bundle["model"].values():
        tensor.fill_(float("nan"))


def other_robot(bundle: dict) -> None:
    bundle["robot"] = {**bundle["robot"], "urdf": "kuka_iiwa/model.urdf", "sha256": "0" * 64}


def other_sizes(bundle: dict) -> None:
    bundle["obs_dim"], bundle["act_dim"] = 27, 7


def hardware(decision: object) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        (repo / "out" / "hardware.json").write_text(json.dumps(decision))

    return damage


GPU_DECISION = {
    "decision": {"policy_device": "cuda:0", "env_device": "cuda:0", "n_envs_physics": 64, "n_envs_twin": 4096}
}
FAULTS = [
    # (id, damage, stage, args, a word the one line must hold)
    ("mlflow.db cut in half", truncate("mlflow.db"), "train", [], "damaged"),
    ("mlflow.db cut in half", truncate("mlflow.db"), "evaluate", [], "damaged"),
    ("mlflow.db on an old schema", old_schema, "train", [], "mlflow db upgrade"),
    ("mlflow.db on an old schema", old_schema, "export", [], "mlflow db upgrade"),
    ("policy with NaN weights", edit_policy(nan_weights), "export", [], "non-finite"),
    ("policy with NaN weights", edit_policy(nan_weights), "evaluate", [], "non-finite"),
    ("policy cut in half", truncate("models/policy.pt"), "export", [], "not a readable rlcore policy file"),
    ("policy cut in half", truncate("models/policy.pt"), "evaluate", [], "not a readable rlcore policy file"),
    ("policy of another robot", edit_policy(other_robot), "evaluate", [], "kuka_iiwa/model.urdf"),
    ("policy of another robot", edit_policy(other_robot), "export", [], "kuka_iiwa/model.urdf"),
    ("policy of other sizes", edit_policy(other_sizes), "evaluate", ["--model", "models/policy.pt"], "27 observations"),
    ("hardware.json from a GPU machine", hardware(GPU_DECISION), "train", [], "cuda:0"),
    ("hardware.json a list", hardware([1, 2]), "train", [], "hardware.json"),
    ("hardware.json without a decision", hardware({"decision": {}}), "train", [], "hardware.json"),
]


@pytest.mark.parametrize(("what", "damage", "name", "args", "word"), FAULTS, ids=[f"{f[0]}: {f[2]}" for f in FAULTS])
def test_a_fault_stops_with_one_line_and_writes_nothing(repo, what, damage, name, args, word):
    kept = {p: p.read_bytes() for p in (repo / "mlflow.db", repo / "models/policy.pt", repo / "out/hardware.json")}
    damage(repo)
    try:
        before = snapshot(repo)
        proc = stage(name, repo, *args, check=False)
        lines = [
            line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("argv", "pybullet"))
        ]
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr and 1 <= len(lines) <= 2, proc.stderr[-3000:]
        assert word in lines[-1], lines
        assert snapshot(repo) == before  # nothing written, nothing half-written
        assert not [p for p in repo.rglob("*.tmp*") if p.is_file()]
    finally:
        for path, data in kept.items():
            path.write_bytes(data)
    runs = sqlite3.connect(repo / "mlflow.db").execute("SELECT status FROM runs").fetchall()
    assert ("RUNNING",) not in runs


def test_rlcore_debug_shows_the_traceback(repo):
    """RLCORE_DEBUG=1: the same fault, with its traceback, for a bug report."""
    kept = (repo / "out/hardware.json").read_text()
    hardware([1, 2])(repo)
    try:
        env = {**child_env(), "RLCORE_DEBUG": "1"}
        proc = subprocess.run(
            [sys.executable, "stages/train.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        (repo / "out/hardware.json").write_text(kept)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_an_unreadable_checkpoint_is_set_aside(repo):
    """A checkpoint that holds no checkpoint: the run says so, sets it aside and starts fresh."""
    ckpt = repo / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(exist_ok=True)
    torch.save([1, 2, 3], ckpt)
    proc = stage("train", repo, "--set", "train.total_steps=2048")
    assert "set aside, starting fresh" in proc.stdout
    assert (repo / "checkpoints" / "last.corrupt").is_file() and not ckpt.exists()


def test_a_store_away_at_the_start_gets_every_metric_when_it_comes_back(repo, tmp_path):
    """MLFLOW_TRACKING_URI names a server that is not up yet: training starts anyway, and when a
    real `mlflow server` comes up on that port mid-training, the run opens there with every metric."""
    from mlflow.tracking import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**child_env(), "MLFLOW_TRACKING_URI": uri}
    steps = 400_000
    proc = subprocess.Popen(
        [sys.executable, "stages/train.py", "--set", f"train.total_steps={steps}"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = None
    try:
        time.sleep(12)  # training has started without the store
        server = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", port, tmp_path, tmp_path / "artifacts")
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]
        assert "does not answer; training goes on" in out
        run_id = json.loads((repo / "out" / "train.json").read_text())["run_id"]
        client = MlflowClient(uri)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        updates = len((repo / "out" / "train_curve.csv").read_text().splitlines()) - 1
        assert len(client.get_metric_history(run_id, "fps")) == updates  # every update's metrics, none lost
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None:
            stop_mlflow_server(server)


def test_a_store_that_never_comes_keeps_the_metrics_for_replay(repo, tmp_path):
    """No server ever: training finishes, says so, and keeps every metric in out/mlflow_unsent.json;
    `python -m rlcore.tracking.replay` puts them into the store that answers later."""
    from mlflow.tracking import MlflowClient

    env = {**child_env(), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    proc = subprocess.run(
        [sys.executable, "stages/train.py", "--set", "train.total_steps=4096"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    unsent = repo / "out" / "mlflow_unsent.json"
    assert "never answered" in proc.stderr and unsent.is_file()
    updates = len((repo / "out" / "train_curve.csv").read_text().splitlines()) - 1
    store = f"sqlite:///{tmp_path / 'later.db'}"
    replay = subprocess.run(
        [sys.executable, "-m", "rlcore.tracking.replay", str(unsent)],
        cwd=repo,
        env={**child_env(), "MLFLOW_TRACKING_URI": store},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr[-3000:]
    run_id = json.loads((repo / "out" / "train.json").read_text())["run_id"]
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "fps")) == updates


def test_writes_are_whole_or_absent(tmp_path, monkeypatch):
    """A write the disk refuses leaves the old file as it was, no temporary behind, and one line
    naming the file; a folder that cannot take a file is found before work starts."""
    from rlcore.runtime import files

    target = tmp_path / "out" / "eval.json"
    files.write_json(target, {"old": 1})

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(files.DiskError, match=r"cannot write .*eval.json: the disk is full"):
        files.write_json(target, {"new": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": 1} and list(target.parent.iterdir()) == [target]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    import tempfile

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(files.DiskError, match="read-only"):
        files.check_writable([tmp_path / "models" / "policy.pt"])
    monkeypatch.undo()
    with pytest.raises(files.DiskError, match="MB free"):
        files.check_free_space(tmp_path, need_mb=1e12)


def test_a_sender_given_its_run_late_sends_without_spinning():
    """A MetricSender started without a run (the store was away) sends the rows queued so far once
    attached, at its own pace: a handful of ticks a second, not a loop that starves training."""
    from rlcore.tracking import runs as tracking

    class Store:
        def __init__(self):
            self.batches = []

        def log_batch(self, run_id, metrics):
            self.batches.append((run_id, [m.step for m in metrics]))

    store = Store()
    sender = tracking.MetricSender(store, None, every_s=0.2)
    ticks = []
    send = sender._send_pending
    sender._send_pending = lambda: ticks.append(1) or send()
    for step in (1, 2, 3):
        sender.add({"fps": 1.0, "success_rate": 0.5}, step)
    time.sleep(0.5)
    assert store.batches == []  # no run yet: the rows wait
    sender.attach("run-1", skip_through=1)
    time.sleep(1.0)
    assert sender.close() == 0
    assert [b[0] for b in store.batches] == ["run-1"] and sorted(set(store.batches[0][1])) == [2, 3]
    assert len(ticks) < 50, f"{len(ticks)} sends in 1.5 s: the sender spins"
