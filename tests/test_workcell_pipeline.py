"""`dvc repro` end to end in the preset workcell at small sizes: the cache drops targets in the
obstacles, training ends episodes on contact, evaluation counts collisions for the policy and the
reference, the ONNX model names the workcell, and the report shows it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY_PARAMS, copy_repo, dvc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    params = {**TINY_PARAMS, "env": {**TINY_PARAMS["env"], "workcell": "fanuc_cell"}}
    params["eval"] = {**TINY_PARAMS["eval"], "episodes": 40}
    params["report"] = {**TINY_PARAMS["report"], "benchmarks": []}  # the run's own report (other tests time them)
    root = copy_repo(tmp_path_factory.mktemp("workcell_pipeline"), params)
    out = dvc(root, "repro")
    assert "Running stage 'report'" in out.stdout
    assert "workcell fanuc_cell@" in out.stdout and "dropped in the workcell's obstacles, by level" in out.stdout
    return root


def test_every_stage_knows_the_workcell(repo):
    from rlcore.config.workcell import resolve

    cell = resolve("fanuc_cell").id
    with np.load(repo / "data/targets.npz") as data:
        meta = json.loads(str(data["meta"]))
    assert meta["workcell"] == cell and sum(meta["dropped_by_obstacles"]) > 0
    assert json.loads((repo / "out/train.json").read_text())["workcell"] == cell
    evaluation = json.loads((repo / "out/eval.json").read_text())
    assert evaluation["episodes"] == 40
    for who in ("", "reference_"):
        assert 0 <= evaluation[f"{who}collision_rate"] <= 1
        assert evaluation[f"{who}success_rate"] <= 1 - evaluation[f"{who}collision_rate"] + 1e-9
    assert evaluation["reference_collision_rate"] > 0  # some straight paths cross the pillar
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(repo / "models/policy.onnx")).metadata_props}
    assert meta["rlcore.workcell"] == cell
    assert json.loads((repo / "out/export.json").read_text())["controller_episodes"] == 8
    report = (repo / "out/report/report.md").read_text()
    assert f"workcell {cell}" in report and "collision_rate" in report
    assert (repo / "out/eval.gif").stat().st_size > 10_000
