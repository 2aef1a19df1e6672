"""`dvc exp run --run-all` then `dvc exp apply`, in a repo copy of its own (so it runs beside
tests/test_experiments.py under pytest-xdist): the experiment leaves the workspace alone, logs one
MLflow run, and apply brings its outputs back, naming that run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import dvc, run
from tests.test_experiments import baseline_repo, check_experiment_runs, mlflow_runs, snapshot, wait_for_queue

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return baseline_repo(tmp_path_factory)


def test_run_all_then_apply(repo):
    before_files, before_runs = snapshot(repo), set(mlflow_runs(repo))
    seeds = {"r-seed7": 7}
    for name, seed in seeds.items():
        dvc(repo, "exp", "run", "--queue", "-n", name, "-S", f"seed={seed}", "-S", "train.total_steps=8192")
    dvc(repo, "exp", "run", "--run-all")
    wait_for_queue(repo)
    assert snapshot(repo) == before_files
    check_experiment_runs(repo, before_runs, set(seeds), seeds)
    # apply brings the experiment's outputs, and out/train.json names its MLflow run
    run_id = next(r.info.run_id for r in mlflow_runs(repo).values() if r.data.tags.get("dvc_exp_name") == "r-seed7")
    dvc(repo, "exp", "apply", "r-seed7")
    assert json.loads((repo / "out/train.json").read_text())["run_id"] == run_id
    assert "seed: 7" in (repo / "params.yaml").read_text()
    assert (repo / "models/policy.pt").is_file()
    run(["git", "checkout", "--", "params.yaml"], repo, check=False)
