"""Every override means what it says, or stops: each stage's CLI over bad input exits non-zero
with at most two lines, no traceback, and nothing written or logged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import copy_repo, stage

WATCHED = ("data", "models", "out", "checkpoints")


def snapshot(repo: Path) -> dict[str, str]:
    """Every file the pipeline writes, and the MLflow and Optuna stores, by content hash."""
    files = [p for d in WATCHED for p in (repo / d).rglob("*") if p.is_file()]
    files += [p for p in (repo / "mlflow.db", repo / "optuna.db") if p.is_file()]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repo copy with its targets, hardware decision (CPU) and a tiny trained model."""
    root = copy_repo(tmp_path_factory.mktemp("cli"), git=False)
    for name in ("targets", "hardware", "train"):
        stage(name, root)
    (root / "broken.yaml").write_text("train: [unclosed\n")
    return root


CASES = [
    # (stage, args, a word the one-line error must contain)
    ("train", ["--set", "hardware.device=cuda"], "hardware.device"),
    ("train", ["--set", "hardware.device=mps"], "hardware.device"),
    ("train", ["--set", "env.success_radius=-1"], "env.success_radius"),
    ("train", ["--set", "train.n_stepz=4"], "n_stepz"),
    ("train", ["--params", "broken.yaml"], "broken.yaml"),
    ("train", ["--params", "missing.yaml"], "missing.yaml"),
    ("targets", ["--set", "robot.urdf=no_such_robot.urdf"], "no_such_robot.urdf"),
    ("hardware", ["--set", "hardware.device=cuda"], "hardware.device"),
    ("evaluate", ["--episodes", "0"], "--episodes"),
    ("evaluate", ["--episodes", "-3"], "--episodes"),
    ("evaluate", ["--episodes", "many"], "--episodes"),
    ("evaluate", ["--model", "params.yaml"], "params.yaml"),
    ("evaluate", ["--model", "no_such_model.pt"], "no_such_model.pt"),
    ("tune", ["--trials", "-1"], "--trials"),
    ("tune", ["--trials", "0"], "--trials"),
    ("tune", ["--seeds", "0"], "--seeds"),
    ("tune", ["--timeout", "-5"], "--timeout"),
    ("tune", ["--storage", "postgresql+psycopg2://u:secret@127.0.0.1/optuna"], 'pip install -e ".[postgres]"'),
    ("tune", ["--storage", "not a url"], "storage"),
    ("report", ["--set", "report.rounds=0"], "report.rounds"),
    # sizes the machine cannot hold stop before anything is allocated (host RAM on the CPU)
    ("train", ["--set", "train.n_envs=4194304", "--set", "train.total_steps=8192"], "RAM"),
    ("train", ["--set", "train.actor_hidden=[-4]"], "train.actor_hidden"),
    ("train", ["--set", "train.actor_hidden=[0]"], "train.actor_hidden"),
    ("targets", ["--set", "robot.home=[.nan,0,0,0,0,0]"], "robot.home"),
    ("targets", ["--set", "targets.min_height=1.9", "--set", "targets.n=200"], "targets.min_height"),
    ("tune", ["--budget-s", "inf"], "--budget-s"),
    ("tune", ["--study-name", "../../x"], "--study-name"),
]


@pytest.mark.parametrize(("name", "args", "word"), CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_input_stops_with_one_clear_line(repo, name, args, word):
    before = snapshot(repo)
    proc = stage(name, repo, *args, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr and 1 <= len(lines) <= 2, proc.stderr[-3000:]
    assert word in lines[-1], lines
    assert "secret" not in proc.stderr
    assert snapshot(repo) == before


def test_explicit_cpu_over_a_recorded_decision_is_used(repo):
    """An explicit, usable device that out/hardware.json did not decide is probed and used."""
    import json

    hardware = repo / "out" / "hardware.json"
    original = hardware.read_text()
    data = json.loads(original)
    data["decision"].update(policy_device="cuda:0", env_device="cuda:0")
    hardware.write_text(json.dumps(data))
    try:
        proc = stage("train", repo, "--set", "hardware.device=cpu", "--set", "train.total_steps=1024")
        assert "hardware.device = cpu: probed and used" in proc.stdout
        assert json.loads((repo / "out" / "train.json").read_text())["device"] == "cpu"
    finally:
        hardware.write_text(original)
