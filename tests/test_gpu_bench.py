"""`python -m rlcore.bench gpu` on a CPU machine, small, without PyBullet: every figure of the
command is in its JSON, a size over the host's memory is skipped with the reason, and the time to
the target comes from real training scored in the twin."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT, child_env, mini_checkout

TINY = {
    "targets": {"n": 300},
    "env": {"success_radius": 1.0},  # every episode succeeds: the target is reached at the first score
    "train": {"n_steps": 8, "actor_hidden": [16, 16], "critic_hidden": [16, 16], "epochs": 2},
    "hardware": {"n_envs_twin": 64},
}


def test_gpu_bench_on_the_cpu_without_pybullet(tmp_path):
    mini_checkout(tmp_path, TINY)  # the target cache built here, where pybullet installs
    code = (
        "import sys\n"
        "for m in ('pybullet', 'pybullet_data', 'pybullet_utils'):\n"
        "    sys.modules[m] = None\n"
        "from rlcore.bench.__main__ import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["gpu", "--n-envs", "64", "256", "4194304", "--budget-steps", "4096", "--score-every", "1"]
    args += ["--target", "0.5", "--out", "out/gpu.json"]
    env = {**child_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert result["rounds"] == 3 and [d["device"] for d in result["devices"] if d["usable"]] == ["cpu"]
    rows = {r["n_envs"]: r for r in result["sizes"]}
    for n in (64, 256):
        assert rows[n]["env_steps_per_s"] > 0 and rows[n]["ppo_steps_per_s"] > 0
        assert rows[n]["estimate_mb"] > 0 and rows[n]["measured_peak_mb"] is None  # the CPU cannot tell
    assert rows[256]["estimate_mb"] > rows[64]["estimate_mb"]
    assert "exceeds the host memory" in rows[4194304]["skipped"]
    cpu = result["time_to_target"]["cpu"]
    assert cpu["reached"] and cpu["n_envs"] == 64 and cpu["steps_to_target"] == 64 * 8
    assert 0 < cpu["time_to_target_s"] and cpu["last_score"]["heldout_twin"] >= 0.5
    assert result["decision"]["policy_device"] == "cpu"
    assert "time to 50% held-out on cpu (64 envs):" in out.stdout and "skipped: estimate" in out.stdout
