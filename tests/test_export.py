"""The ONNX export and the torch-free controller: onnxruntime matches the torch policy with each
exporter this torch has, the controller never imports torch, drives PyBullet as `evaluate` does,
and the MLflow registry keeps the best version as `champion`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from rlcore.envs.task import obs_size
from rlcore.policy import onnx_export as export
from rlcore.policy.file import gaussian_bundle
from rlcore.policy.networks import ActorCritic, RunningNorm
from rlcore.robots.chain import read_chain
from tests.helpers import ROOT

EXPORTERS = ["torchscript"] + (["dynamo"] if export.exporter() == "dynamo" else [])


def random_bundle(params, seed: int = 0) -> dict:
    """A policy bundle with random weights and a normaliser far from identity (no training needed)."""
    torch.manual_seed(seed)
    chain = read_chain(params.robot.urdf, params.robot.ee_link)
    obs_dim, dof = obs_size(chain.dof), chain.dof
    t = params.train
    model = ActorCritic(obs_dim, dof, t.actor_hidden, t.critic_hidden, t.activation, t.init_log_std)
    with torch.no_grad():  # actions of about +-0.4 that move the arm and depend on every input
        model.actor[-1].weight.mul_(100.0)
    norm = RunningNorm(obs_dim)
    norm.update(torch.randn(512, obs_dim) * 0.3 + 0.1)
    return gaussian_bundle(model, norm, params.model_dump(mode="json"), "rlcore", obs_dim, dof)


@pytest.fixture(scope="module")
def exported(small_params, small_cache, tmp_path_factory):
    """{exporter: path} for a random policy, and the bundle."""
    bundle = random_bundle(small_params)
    chain = read_chain(small_params.robot.urdf, small_params.robot.ee_link)
    folder = tmp_path_factory.mktemp("onnx")
    paths = {m: folder / f"policy_{m}.onnx" for m in EXPORTERS}
    for method, path in paths.items():
        assert export.export_onnx(bundle, chain, small_params.env.control_hz, path, method) == method
    return bundle, paths


@pytest.mark.parametrize("method", EXPORTERS)
def test_onnxruntime_matches_torch_on_10000_observations(exported, small_params, small_cache, method):
    import onnxruntime as ort

    bundle, paths = exported
    obs = export.parity_observations(bundle, small_params, small_cache, 10_000)
    assert obs.shape == (10_000, bundle["obs_dim"]) and obs.dtype == np.float32
    diff = export.parity(bundle, paths[method], obs)
    assert diff["max_abs_action"] <= 1e-5 and diff["max_abs_velocity_over_limit"] <= 1e-5, diff
    session = ort.InferenceSession(str(paths[method]), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # a dynamic batch
        action, velocity = session.run(None, {"obs": obs[:batch]})
        assert action.shape == velocity.shape == (batch, bundle["act_dim"])
        assert np.all(np.abs(action) <= 1.0)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["rlcore.exporter"] == method and len(json.loads(meta["rlcore.joint_names"])) == 6
    layout = json.loads(meta["rlcore.observation_layout"])
    assert sum(part["size"] for part in layout) == bundle["obs_dim"]
    assert [i.name for i in session.get_inputs()] == ["obs"]
    assert [o.name for o in session.get_outputs()] == ["action", "joint_velocity"]


def test_the_controller_runs_without_torch(exported):
    _, paths = exported
    code = f"""
import sys
import numpy as np
from rlcore.policy.controller import Controller
c = Controller({str(paths[EXPORTERS[0]])!r})
q = (c.lower + c.upper) / 2
c.reset(q)
for _ in range(3):
    q = c.step(q, np.zeros(c.dof), np.array([0.4, 0.1, 0.5]))
assert q.shape == (6,) and np.all(q >= c.lower) and np.all(q <= c.upper)
print("torch imported" if "torch" in sys.modules else "no torch")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no torch"


def test_the_controller_drives_pybullet_as_evaluate_does(exported, small_params, small_cache):
    """200 held-out targets at accurate physics: the controller (measured joints in, joint-position
    commands out) ends each episode where the torch policy does, and at the same success rate."""
    from rlcore.pipeline.evaluate import evaluate, evaluate_controller
    from rlcore.policy.controller import Controller
    from rlcore.policy.file import policy_from_bundle

    bundle, paths = exported
    controller = Controller(paths[EXPORTERS[0]])
    torch_metrics, torch_rows = evaluate(policy_from_bundle(bundle), small_params, small_cache, 200, seed=5)
    ctl_metrics, ctl_rows = evaluate_controller(controller, small_params, small_cache, 200, seed=5)
    assert len(ctl_rows) == 200 and [r["target"] for r in ctl_rows] == [r["target"] for r in torch_rows]
    gaps = [abs(a["final_distance_mm"] - b["final_distance_mm"]) for a, b in zip(torch_rows, ctl_rows)]
    assert max(gaps) < 1.0, f"final distances differ by up to {max(gaps):.3f} mm"
    assert abs(ctl_metrics["success_rate"] - torch_metrics["success_rate"]) <= 0.02
    latency = controller.latency(500)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]


def test_registration_champion_and_serving(exported, tmp_path, monkeypatch):
    """Below export.register_min_success: logged, not registered. At or above: a new version of
    rlcore-reach; `champion` moves only to a version with a higher held-out success. Then
    `mlflow models serve` of the champion answers POST /invocations with onnxruntime's actions."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import registry as model_registry
    from rlcore.tracking import runs as tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.setup(tmp_path)
    _, paths = exported
    example = np.zeros((1, obs_size(6)), dtype=np.float32)
    client = MlflowClient()

    def export_run(success: float | None) -> dict:
        run_id = client.create_run(experiment).info.run_id
        return model_registry.log_onnx_model(run_id, paths[EXPORTERS[0]], example, success, min_success=0.95)

    low = export_run(0.949)
    assert low["version"] is None and "94.9%, below export.register_min_success 95.0%" in low["not_registered"]
    assert mlflow.onnx.load_model(low["model_uri"]) is not None  # logged all the same, with the onnx flavor
    first = export_run(0.97)
    assert first["version"] == "1" and first["champion"]
    worse = export_run(0.96)
    assert worse["version"] == "2" and not worse["champion"]
    assert str(client.get_model_version_by_alias("rlcore-reach", "champion").version) == "1"
    better = export_run(0.99)
    assert better["version"] == "3" and better["champion"]
    champion = client.get_model_version_by_alias("rlcore-reach", "champion")
    assert str(champion.version) == "3" and champion.tags["heldout_success_rate"] == "0.99"

    # a real scoring server for the champion, on loopback
    import onnxruntime as ort

    from tests.helpers import free_port, start_http_process, stop_mlflow_server

    port = free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "models", "serve", "-m", "models:/rlcore-reach@champion", "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    server = start_http_process(cmd, f"http://127.0.0.1:{port}/ping", tmp_path, env)
    try:
        obs = np.random.default_rng(1).normal(size=(5, obs_size(6))).astype(np.float32)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": {"obs": obs.tolist()}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
    finally:
        stop_mlflow_server(server)
    session = ort.InferenceSession(str(paths[EXPORTERS[0]]), providers=["CPUExecutionProvider"])
    action, velocity = session.run(None, {"obs": obs})
    np.testing.assert_allclose(np.array(served["action"]), action, atol=1e-6)
    np.testing.assert_allclose(np.array(served["joint_velocity"]), velocity, atol=1e-6)
