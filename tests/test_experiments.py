"""DVC experiments (`dvc exp run --queue`, then `--run-all -j 2` and `dvc exp apply`; `--temp`) in a
repo copy with tiny params: each experiment runs in its own workspace, logs one MLflow run into the
repo's store, and leaves the workspace's outputs alone."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_PARAMS, copy_repo, dvc, run

pytestmark = pytest.mark.slow  # minutes: whole DAGs in DVC experiments

OUTPUTS = ("data", "models", "out", "checkpoints")


def snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file the pipeline writes in the workspace."""
    files = sorted(p for d in OUTPUTS for p in (repo / d).rglob("*") if p.is_file())
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def mlflow_runs(repo: Path) -> dict[str, object]:
    """The repo store's runs, by run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rlcore")
    return {r.info.run_id: r for r in client.search_runs([experiment.experiment_id], max_results=1000)}


def experiments(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> its metrics files' contents."""
    rows = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    found = {}
    for baseline in rows[1:]:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = rev["data"]["metrics"]
                found[rev["name"]] = {k: v.get("data") for k, v in metrics.items()}
    return found


def wait_for_queue(repo: Path, timeout: float = 900) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repo copy with the pipeline run once (the experiments' baseline), shared by this module.
    Its report runs one benchmark (the batched twin's, about a second): tests/test_pipeline.py
    checks all four."""
    params = {**TINY_PARAMS, "report": {**TINY_PARAMS["report"], "benchmarks": ["batched"]}}
    root = copy_repo(tmp_path_factory.mktemp("experiments"), params)
    dvc(root, "repro")
    # a checkpoint in the workspace that no experiment may resume from or touch
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "checkpoints" / "last.pt").write_bytes(b"the workspace's own checkpoint")
    return root


def check_experiment_runs(
    repo: Path, before: set[str], names: set[str], seeds: dict[str, int], bench: bool = True
) -> None:
    """One new FINISHED MLflow run per experiment, tagged and complete (with the report's batched-twin
    figure where `bench`); exp show names it."""
    runs = mlflow_runs(repo)
    new = [r for run_id, r in runs.items() if run_id not in before]
    assert sorted(r.data.tags.get("dvc_exp_name") for r in new) == sorted(names)
    shown = experiments(repo)
    for r in new:
        name = r.data.tags["dvc_exp_name"]
        assert r.info.status == "FINISHED", name
        assert r.data.tags["dvc_exp_baseline_rev"] and r.data.params["seed"] == str(seeds[name])
        assert {"success_rate", "eval_success_rate", "train_wall_s"} <= set(r.data.metrics)
        assert ("bench_fps_batched_best" in r.data.metrics) == bench, sorted(r.data.metrics)
        train = shown[name]["out/train.json"]
        assert train["run_id"] == r.info.run_id
        assert shown[name]["out/eval.json"]["success_rate"] == pytest.approx(
            r.data.metrics["eval_success_rate"], rel=1e-3
        )
        # trained from scratch in its own workspace: the curve starts at the first update
        from mlflow.tracking import MlflowClient

        history = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_metric_history(r.info.run_id, "fps")
        steps = sorted(m.step for m in history)
        assert steps[0] == train["n_envs"] * 16 and steps[-1] == train["steps"] and len(steps) == len(set(steps))


def test_queued_experiments_run_all_in_parallel_then_apply(repo):
    """Two queued experiments, `dvc exp run --run-all -j 2` (two writers, one SQLite store: they
    take turns); then `dvc exp apply` brings one back, naming its MLflow run."""
    before_files, before_runs = snapshot(repo), set(mlflow_runs(repo))
    seeds = {"q-seed3": 3, "q-seed4": 4}
    for name, seed in seeds.items():
        dvc(repo, "exp", "run", "--queue", "-n", name, "-S", f"seed={seed}", "-S", "train.total_steps=8192")
    dvc(repo, "exp", "run", "--run-all", "-j", "2")
    status = wait_for_queue(repo)
    assert status.count("Success") >= 2 and "Failed" not in status, status
    assert snapshot(repo) == before_files
    check_experiment_runs(repo, before_runs, set(seeds), seeds)
    # apply brings the experiment's outputs, and out/train.json names its MLflow run
    run_id = next(r.info.run_id for r in mlflow_runs(repo).values() if r.data.tags.get("dvc_exp_name") == "q-seed4")
    dvc(repo, "exp", "apply", "q-seed4")
    assert json.loads((repo / "out/train.json").read_text())["run_id"] == run_id
    assert "seed: 4" in (repo / "params.yaml").read_text()
    assert (repo / "models/policy.pt").is_file()
    run(["git", "checkout", "--", "params.yaml"], repo, check=False)  # the baseline's params for the next test


def test_temp_experiment_and_documented_special_values(repo):
    """--temp runs the whole DAG; with eval.gif_episodes=0 (a placeholder GIF), report.benchmarks=[]
    (the run's own report, no benchmark) and the other documented special values (null = auto /
    default / off, 180 = all round) it stays whole."""
    before_files, before_runs = snapshot(repo), set(mlflow_runs(repo))
    special = [
        "eval.gif_episodes=0",
        "report.benchmarks=[]",
        "robot.ee_link=null",
        "robot.home=null",
        "targets.max_azimuth_deg=180",
        "hardware.n_envs_twin=null",
        "hardware.vram_limit_mb=null",
        "train.n_envs=null",
        "train.minibatch_size=null",
        "train.clip_value=null",
        "train.target_kl=null",
    ]
    args = [a for kv in special for a in ("-S", kv)]
    out = dvc(repo, "exp", "run", "--temp", "-n", "t-special", "-S", "seed=5", *args).stdout
    assert "Running stage 'evaluate'" in out and "Running stage 'report'" in out
    assert snapshot(repo) == before_files
    check_experiment_runs(repo, before_runs, {"t-special"}, {"t-special": 5}, bench=False)
