"""`bench rsl`: rsl_rl's PPO on the batched twin through its VecEnv interface, with rlcore's sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlcore.pipeline.params import load_params
from tests.helpers import mini_checkout

if os.environ.get("RLCORE_REQUIRE_RSL"):
    import rsl_rl  # noqa: F401 - .ci/run's bench step installs the extra: there a missing one fails
else:  # the README's test command has no bench extra; CI runs this file in its own step with it
    pytest.importorskip("rsl_rl", reason='the bench extra: pip install -e ".[bench]"')

TINY = {
    "targets": {"n": 300},
    "env": {"backend": "twin"},
    "train": {"n_steps": 8, "actor_hidden": [32, 16], "critic_hidden": [24], "epochs": 2, "minibatches": 2},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return mini_checkout(tmp_path_factory.mktemp("rsl"), TINY)


@pytest.fixture(scope="module")
def params(workdir):
    return load_params(workdir / "params.yaml")


@pytest.fixture(scope="module")
def targets(workdir, params):
    from rlcore.pipeline.train import load_targets

    return load_targets(params, workdir)


def test_same_network_and_schedule_on_both_sides(params, targets):
    from rlcore.bench.rsl import RlcoreTrainer, RslTrainer, parameter_count

    ours = RlcoreTrainer(params, targets, 16, torch.device("cpu"))
    theirs = RslTrainer(params, targets, 16, torch.device("cpu"))
    assert parameter_count(ours) == parameter_count(theirs)
    widths = [m.out_features for m in theirs.alg.get_policy().mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [32, 16, 6]
    alg = theirs.alg
    assert (alg.num_learning_epochs, alg.num_mini_batches, alg.schedule) == (2, 2, "adaptive")
    assert alg.learning_rate == params.train.learning_rate and alg.desired_kl == params.train.target_kl
    assert theirs.train_updates(2) == ours.train_updates(2) == 2 * 8 * 16


def test_twin_behind_rsl_vec_env_interface(params, targets):
    from rlcore.bench.rsl import twin_env

    easy = params.model_copy(update={"env": params.env.model_copy(update={"success_radius": 5.0})})
    n = 64  # 3 x 64 episodes: past the curriculum's window (100) after its in-flight skip (64)
    env = twin_env(easy, targets, n, torch.device("cpu"), seed=0)
    obs = env.get_observations()
    assert obs["policy"].shape == (n, env.env.obs_dim) and env.num_actions == 6
    level = env.curriculum.level
    ends = 0
    for _ in range(easy.env.episode_steps * 3):
        obs, rewards, dones, extras = env.step(torch.zeros(n, 6))
        assert rewards.shape == dones.shape == (n,) and torch.equal(extras["time_outs"], dones)
        ends += int(dones.sum())
        assert env.episode_length_buf.max() <= easy.env.episode_steps
    assert ends == n * 3  # every episode ends at the time limit
    assert env.curriculum.level > level  # every episode a success (5 m radius): the curriculum went up


def test_bench_rsl_command_trains_both_and_scores_them(workdir):
    run = subprocess.run(
        [sys.executable, "-m", "rlcore.bench", "rsl", "--budget-s", "1", "--n-envs", "32"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((workdir / "out" / "rsl_bench.json").read_text())
    rows = {(r["device"], r["ppo"]): r for r in result["rows"]}
    assert {("cpu", "rlcore"), ("cpu", "rsl_rl")} <= set(rows)
    for r in rows.values():
        assert r["steps_per_s"] > 0 and r["steps"] > 0 and r["budget_s"] >= 1.0
        assert 0.0 <= r["success_rate"] <= 1.0 and r["episodes"] == 30  # every held-out target (10% of 300)
    assert "rsl_rl" in run.stdout and "held-out" in run.stdout
