"""The DVC pipeline end to end in a temporary copy of the repo, MLflow read back through its
client and through a real server's REST API, and the errors a user meets first."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.helpers import child_env, copy_repo, dvc, free_port, stage, start_mlflow_server, stop_mlflow_server


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("pipeline"))
    out = dvc(root, "repro")
    assert "Running stage 'train'" in out.stdout
    # every stage that logs points at the runs table (MLflow 3 opens an experiment on its GenAI view)
    assert out.stdout.count("/runs?workflowType=machine_learning") >= 3, out.stdout[-3000:]
    return root


def test_repro_writes_every_output(repo):
    for path in [
        "data/targets.npz",
        "out/hardware.json",
        "models/policy.pt",
        "out/train.json",
        "out/train_curve.csv",
        "out/eval.json",
        "out/eval_episodes.csv",
        "out/eval.gif",
        "out/eval_cdf.png",
        "out/report/report.md",
        "out/bench.json",
        "dvc.lock",
    ]:
        assert (repo / path).is_file(), path
    train = json.loads((repo / "out/train.json").read_text())
    assert {"run_id", "steps", "fps", "wall_s", "device", "backend", "algo"} <= set(train)
    assert train["steps"] >= 16384 and train["backend"] == "twin"
    evaluation = json.loads((repo / "out/eval.json").read_text())
    assert {"success_rate", "success_rate_5cm", "final_distance_mm_median", "final_distance_mm_p90", "episodes"} <= set(
        evaluation
    )
    assert evaluation["episodes"] == 8
    low, high = evaluation["success_rate_ci_low"], evaluation["success_rate_ci_high"]
    assert 0 <= low <= evaluation["success_rate"] <= high <= 1 and high - low > 0.1  # 8 episodes: a wide interval
    # the reference controller on the same episodes, every radius of eval.radii with its interval
    assert evaluation["reference_episodes"] == 8 and evaluation["reference_within_1mm"] == 1.0
    assert {f"{p}within_{r}_ci_low" for p in ("", "reference_") for r in ("1mm", "5mm", "20mm")} <= set(evaluation)
    exported = json.loads((repo / "out/export.json").read_text())
    assert exported["exporter"] == "torchscript" and exported["observations"] == 1000
    assert exported["max_abs_action"] <= 1e-5 and exported["max_abs_velocity_over_limit"] <= 1e-5
    assert exported["controller_episodes"] == 8 and 0 < exported["latency_p50_ms"] <= exported["latency_p99_ms"]
    assert abs(exported["controller_success_rate"] - exported["torch_success_rate"]) <= 0.25  # 8 episodes
    assert exported["reference_within_1mm"] == 1.0  # the reference through the controller API
    bench = json.loads((repo / "out/bench.json").read_text())
    assert bench["fps_rlcore"] > 0 and bench["fps_sb3"] > 0
    assert bench["ratio_rlcore_vs_sb3"] == pytest.approx(bench["fps_rlcore"] / bench["fps_sb3"], rel=0.01)
    assert bench["rounds"] == 3 and bench["spread_rlcore"] >= 0 and bench["fps_single_env"] > 0
    efficiency = bench["fps_rlcore"] / (bench["cores"] * bench["fps_single_env"])
    assert bench["efficiency_rlcore"] == pytest.approx(efficiency, rel=0.01, abs=6e-4)  # rounded to 3 places
    report = (repo / "out/report/report.md").read_text()
    assert "rlcore PPO vs stable-baselines3 PPO" in report and train["run_id"] in report
    assert "median of 3 rounds" in report and "parallel efficiency" in report and "95% CI" in report
    assert "GFLOP/s" in report and "fp32 torch.mm peak" in report  # the update against the machine's peak
    raw = json.loads((repo / "out/report/bench_raw.json").read_text())
    assert len(raw["ppo"]["rlcore"]["runs"]) == 3 and len(raw["env"]["rows"][0]["spread"]["runs"]) == 3
    assert len(list((repo / "out/report").glob("*.png"))) >= 4
    curve = (repo / "out/train_curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) > 2


def test_mlflow_run_holds_params_metrics_and_artifacts(repo):
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    tracking.setup(repo)
    client = MlflowClient()
    run_id = json.loads((repo / "out/train.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.params["resolved.policy_device"] == "cpu"
    for metric in (
        "success_rate",
        "fps",
        "approx_kl",
        "eval_success_rate",
        "eval_final_distance_mm_median",
        "bench_fps_rlcore",
        "bench_ratio_rlcore_vs_sb3",
    ):
        assert metric in run.data.metrics, metric
    tags = run.data.tags
    assert {"git_dirty", "dvc_stage", "params_hash", "device", "backend", "algo"} <= set(tags)
    # MLflow's own source tags (the runs table's Source column), the commit the repo copy is at
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == commit and len(commit) == 40
    assert tags["mlflow.source.name"] == "stages/train.py" and tags["mlflow.source.type"] == "LOCAL"
    # the target cache as the dataset input, digested as DVC's md5 in dvc.lock
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    [cache_md5] = [o["md5"] for o in lock["stages"]["targets"]["outs"] if o["path"] == "data/targets.npz"]
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "targets.npz" and dataset_input.dataset.digest == cache_md5
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert tags["backend"] == "twin" and tags["algo"] == "rlcore"
    assert (
        tags["compile"]
        == "twin step: eager (train.compile=auto on cpu); policy forward: eager (train.compile=auto on cpu)"
    )
    history = client.get_metric_history(run_id, "success_rate")
    assert len(history) >= 2
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model", "eval", "report"} <= artifacts
    assert "eval/eval.gif" in {a.path for a in client.list_artifacts(run_id, "eval")}
    assert (repo / "mlflow.db").is_file() and (repo / "mlartifacts").is_dir()
    # the ONNX policy, logged with the onnx flavor into this run (the runs table's Model column)
    [model_output] = run.outputs.model_outputs
    model = client.get_logged_model(model_output.model_id)
    assert model.name == "policy" and model.source_run_id == run_id
    assert "export_max_abs_action" in run.data.metrics and "export_latency_p50_ms" in run.data.metrics


def test_second_repro_runs_no_training(repo):
    before = (repo / "out/train.json").read_text()
    out = dvc(repo, "repro")
    assert "Stage 'train' didn't change, skipping" in out.stdout
    assert "Running stage 'train'" not in out.stdout
    assert (repo / "out/train.json").read_text() == before


def test_learning_rate_change_reruns_train_evaluate_export_report_only(repo):
    """DVC's own plan for a changed train.learning_rate (`dvc repro --dry`: what a rerun would run,
    decided by the same dependency check; the first repro already ran every stage for real)."""
    original = (repo / "params.yaml").read_text()
    data = yaml.safe_load(original)
    data["train"]["learning_rate"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        out = dvc(repo, "repro", "--dry").stdout
    finally:
        (repo / "params.yaml").write_text(original)
    for name in ("train", "evaluate", "export", "report"):
        assert f"Running stage '{name}'" in out, name
    assert "Stage 'targets' didn't change, skipping" in out
    metrics = dvc(repo, "metrics", "show", "--json").stdout
    assert "success_rate" in metrics and "fps_rlcore" in metrics


def test_mlflow_server_serves_the_run_over_rest(repo):
    port = free_port()
    server = start_mlflow_server(f"sqlite:///{repo / 'mlflow.db'}", port, repo)
    try:
        base = f"http://127.0.0.1:{port}"
        run_id = json.loads((repo / "out/train.json").read_text())["run_id"]
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=10) as r:
            run = json.loads(r.read())["run"]
        assert run["info"]["run_id"] == run_id
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert "train.n_steps" in params and "eval_success_rate" in metrics
    finally:
        stop_mlflow_server(server)


def browser() -> str:
    """Chromium for the browser check: RLCORE_TEST_BROWSER (CI sets it), else one on PATH."""
    found = os.environ.get("RLCORE_TEST_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("no chromium under CI (.ci/run installs it through .ci/browser)")
        pytest.skip("install chromium (Debian: apt-get install chromium) to run the browser check")
    return found


def printed_runs_url(root: Path, env: dict[str, str]) -> str:
    """The runs-table address the stages print, for the repo's store under `env`."""
    code = "from rlcore.tracking import runs; print(runs.runs_url())"
    environ = {k: v for k, v in child_env().items() if k != "RLCORE_UI_URL"} | env
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=root, env=environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_runs_table_shows_the_run_in_a_browser(repo):
    """What a person sees: `mlflow ui` on the pipeline's store, the URL the stages print, loaded
    in headless Chromium at 1600 px with the page's requests settled; the run's row shows its
    name, its held-out success with its interval and its 5 mm / 1 mm figures, rounded, training
    wall time and the key params. The run also carries the final-distance CDF, the eval metrics as
    a table, and MLflow's system metrics."""
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    chromium = browser()
    run_id = json.loads((repo / "out/train.json").read_text())["run_id"]
    store = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run = store.get_run(run_id)
    port = free_port()
    server = start_mlflow_server(f"sqlite:///{repo / 'mlflow.db'}", port, repo)
    try:
        # the address rlcore prints, with this server as the tracking URI: its host and port
        printed = printed_runs_url(repo, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
        url = (
            f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={tracking.VIEW}"
        )
        assert printed == url, printed
        # a local store: where the user says `mlflow ui` serves, else mlflow ui's default
        assert printed_runs_url(repo, {"RLCORE_UI_URL": "http://127.0.0.1:5001/"}).startswith(
            "http://127.0.0.1:5001/#/"
        )
        assert printed_runs_url(repo, {}).startswith("http://127.0.0.1:5000/#/experiments/")
        cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000"]
        cmd += ["--virtual-time-budget=30000", "--dump-dom", url]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    finally:
        stop_mlflow_server(server)
    text = re.sub(
        r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S))
    )
    assert run.info.run_name in text, text[:2000]
    row = text[text.index(run.info.run_name) :]
    for short, key in tracking.VIEW_NAMES.items():  # whole names, rounded values, in the row
        value = run.data.metrics[short]
        assert value == run.data.metrics[key] and value == float(f"{value:.4g}"), (short, key, value)
        shown = str(int(value)) if value == int(value) else str(value)  # as JavaScript prints a number
        assert f" {short} " in text and f" {shown} " in row, (short, shown, row[:600])
    artifacts = {a.path for a in store.list_artifacts(run_id, "eval")}
    assert {"eval/eval_cdf.png", "eval/metrics_table.json"} <= artifacts, artifacts
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), sorted(run.data.metrics)


def test_missing_inputs_name_the_stage_to_run(tmp_path):
    root = copy_repo(tmp_path, git=False)
    proc = stage("evaluate", root, check=False)
    assert proc.returncode == 2 and "dvc repro train" in proc.stderr and "Traceback" not in proc.stderr
    proc = stage("train", root, check=False)
    assert proc.returncode == 2 and "dvc repro hardware" in proc.stderr
    (root / "out").mkdir()
    (root / "out/hardware.json").write_text(
        json.dumps({"decision": {"policy_device": "cpu", "env_device": "cpu", "n_envs_physics": 2, "n_envs_twin": 64}})
    )
    proc = stage("train", root, check=False)
    assert proc.returncode == 2 and "dvc repro targets" in proc.stderr and "Traceback" not in proc.stderr
