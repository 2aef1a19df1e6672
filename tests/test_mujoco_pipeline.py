"""`dvc repro` end to end on MuJoCo: every stage, the target cache's collision check, evaluation
with its GIF, the export's controller episodes and the report (in CI's run without pybullet, its
PyBullet-backend benchmark: rlcore PPO and SB3 on MuJoCo envs). In the main suite env.physics is
set to mujoco; in CI's run without pybullet (.ci/no_pybullet_run) it stays auto, which must
resolve to MuJoCo by itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY_PARAMS, copy_repo, dvc

NO_PYBULLET = os.environ.get("RLCORE_NO_PYBULLET") == "1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    params = {
        **TINY_PARAMS,
        "env": {**TINY_PARAMS["env"], "physics": "auto" if NO_PYBULLET else "mujoco"},
        # the PPO comparison steps MuJoCo envs through the physics backend's vec env: CI's run without
        # pybullet, where MuJoCo is the only engine, runs it; the main suite runs the twin's benchmark
        "report": {**TINY_PARAMS["report"], "benchmarks": ["ppo"] if NO_PYBULLET else ["batched"]},
    }
    root = copy_repo(tmp_path_factory.mktemp("mujoco_pipeline"), params)
    out = dvc(root, "repro")
    assert "Running stage 'report'" in out.stdout
    return root


def test_repro_runs_every_stage_on_mujoco(repo):
    hardware = json.loads((repo / "out/hardware.json").read_text())
    assert hardware["physics"]["engine"] == "mujoco", hardware["physics"]
    if NO_PYBULLET:  # auto fell back to MuJoCo, and says why
        assert "pybullet does not import here" in hardware["physics"]["reason"]
    with np.load(repo / "data/targets.npz") as data:
        assert json.loads(str(data["meta"]))["collision_engine"] == "mujoco"
    evaluation = json.loads((repo / "out/eval.json").read_text())
    assert evaluation["episodes"] == 8 and 0 <= evaluation["success_rate"] <= 1
    assert (repo / "out/eval.gif").stat().st_size > 10_000  # an animation, not the placeholder
    exported = json.loads((repo / "out/export.json").read_text())
    assert exported["controller_episodes"] == 8
    assert abs(exported["controller_success_rate"] - exported["torch_success_rate"]) <= 0.25  # 8 episodes
    bench = json.loads((repo / "out/bench.json").read_text())
    assert "update_gflops" not in bench  # report.benchmarks: one benchmark
    if NO_PYBULLET:
        assert bench["fps_rlcore"] > 0 and bench["fps_sb3"] > 0  # both PPOs on MuJoCo envs
        assert "MuJoCo env (" in (repo / "out/report/report.md").read_text()
    else:
        assert bench["fps_batched_best"] > 0


def test_evaluate_stage_names_the_engine(repo):
    from tests.helpers import stage

    out = stage("evaluate", repo, "--episodes", "2")
    assert "MuJoCo accurate physics" in out.stdout
