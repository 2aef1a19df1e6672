"""MuJoCo against PyBullet and the twin: the same flange for the same joints (10,000
configurations, three robots), the same trajectories from the same states and commands, and the
same self-collision verdicts for the target cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore.config.schema import Params
from rlcore.envs.batched import BatchedReachEnv
from rlcore.envs.bullet import ReachEnv
from rlcore.envs.mujoco_reach import MujocoReachEnv
from rlcore.robots.arm import BulletArm
from rlcore.robots.kinematics import ForwardKinematics
from rlcore.robots.mujoco_arm import MujocoArm

ROBOTS = ["fanuc_lrmate200id", "kuka_iiwa/model.urdf", "franka_panda/panda.urdf"]


@pytest.mark.parametrize("urdf", ROBOTS)
def test_flange_agrees_with_twin_fk_and_pybullet(urdf):
    mj, pb = MujocoArm(urdf), BulletArm(urdf)
    q = np.random.default_rng(0).uniform(mj.lower, mj.upper, (10_000, len(mj.lower)))
    twin = ForwardKinematics(mj.chain, dtype=torch.float64).ee_position(torch.from_numpy(q)).numpy()
    worst_twin = worst_pb = 0.0
    for qi, ti in zip(q, twin):
        mj.set_joints(qi)
        flange = mj.ee_position()
        worst_twin = max(worst_twin, float(np.abs(flange - ti).max()))
        pb.set_joints(qi)
        worst_pb = max(worst_pb, float(np.abs(flange - pb.ee_position(fk=True)).max()))
    assert worst_twin < 1e-5 and worst_pb < 1e-5, (worst_twin, worst_pb)
    pb.close()


def test_zero_pose_flange_is_the_fanuc_drawing():
    arm = MujocoArm("fanuc_lrmate200id")
    arm.set_joints(np.zeros(6))
    assert np.allclose(arm.ee_position(), [0.465, 0.0, 0.695], atol=1e-9)


@pytest.mark.parametrize(("mode", "pybullet_tol"), [("train", 0.02), ("eval", 0.01)])
def test_trajectories_agree_from_identical_states_and_commands(mode, pybullet_tol):
    """Random commands for 5 episodes from the same start: MuJoCo's flange follows the twin's
    kinematic replay of the tracking law within 1 mm, and PyBullet's within `pybullet_tol` (m)."""
    params = Params()
    mj, pb = MujocoReachEnv(params.env, params.robot, mode=mode), ReachEnv(params.env, params.robot, mode=mode)
    twin = BatchedReachEnv(params.env, params.robot, None, 1, "cpu", mode=mode)
    rng = np.random.default_rng(0)
    worst_twin = worst_pb = 0.0
    for episode in range(5):
        obs_pb, _ = pb.reset(seed=episode)
        obs_mj, _ = mj.reset(seed=episode, options={"target": pb.target})
        assert np.allclose(obs_mj, obs_pb, atol=1e-5)  # the same reset state
        twin.reset(torch.tensor(pb.target[None], dtype=torch.float32))
        twin.q = torch.tensor(mj.arm.joint_state()[0][None], dtype=torch.float32)
        twin.q_cmd = twin.q.clone()
        for _ in range(params.env.episode_steps):
            action = rng.uniform(-1, 1, 6).astype(np.float32)
            obs_mj, *_ = mj.step(action)
            obs_pb, *_ = pb.step(action)
            obs_twin = twin.step(torch.from_numpy(action[None])).final_obs[0].numpy()
            worst_twin = max(worst_twin, float(np.abs(obs_mj[12:15] - obs_twin[12:15]).max()))
            worst_pb = max(worst_pb, float(np.abs(obs_mj[12:15] - obs_pb[12:15]).max()))
    assert worst_twin < 1e-3 and worst_pb < pybullet_tol, (worst_twin, worst_pb)
    pb.close()


def test_self_collision_verdicts_agree_with_pybullet(small_params):
    """The target cache's check on the samples it draws: MuJoCo and PyBullet accept and reject
    the same ones on >= 99% of them (MuJoCo counts pairs within PyBullet's contact margin)."""
    cfg = small_params.targets
    mj = MujocoArm("fanuc_lrmate200id", self_collision=True)
    pb = BulletArm("fanuc_lrmate200id", self_collision=True)
    rng = np.random.default_rng(0)
    same = checked = 0
    for q in rng.uniform(mj.lower, mj.upper, (4000, 6)):
        mj.set_joints(q)
        pos = mj.ee_position()
        if pos[2] < cfg.min_height or np.hypot(pos[0], pos[1]) < cfg.min_radius:
            continue  # rejected before the collision check, by FK that agrees to 1e-5 m
        pb.set_joints(q)
        checked += 1
        same += mj.in_self_collision() == pb.in_self_collision()
    assert checked > 1000 and same / checked >= 0.99, (same, checked)
    pb.close()


@pytest.mark.slow
def test_twin_policy_scores_alike_in_mujoco_and_pybullet(tmp_path):
    """A small policy trained on the twin, evaluated on all 1,000 held-out targets in each engine at
    accurate physics: the success rates differ by at most 3 points."""
    from rlcore.envs.targets import TargetCache
    from rlcore.pipeline.evaluate import evaluate
    from rlcore.policy.file import load_policy
    from tests.helpers import TINY_PARAMS, copy_repo, stage

    params = {
        **TINY_PARAMS,
        "targets": {"n": 10_000},
        # small and short (CI runs it beside the rest of the suite): a policy that reaches most targets
        "train": {
            "total_steps": 800_000,
            "n_envs": 512,
            "n_steps": 16,
            "actor_hidden": [64, 64],
            "critic_hidden": [64, 64],
        },
        "eval": {"episodes": None, "gif_episodes": 0},
    }
    root = copy_repo(tmp_path, params, git=False)
    for name in ("targets", "hardware", "train"):
        stage(name, root)
    policy, bundle = load_policy(str(root / "models" / "policy.pt"))
    rates = {}
    for engine in ("pybullet", "mujoco"):
        p = Params.model_validate(bundle["params"])
        p.env.physics = engine
        cache = TargetCache.load(root / "data" / "targets.npz", p)
        metrics, _ = evaluate(policy, p, cache, None)
        assert metrics["episodes"] == 1000
        rates[engine] = metrics["success_rate"]
    assert rates["pybullet"] >= 0.5, rates  # a policy that reaches targets, so agreement means something
    assert abs(rates["pybullet"] - rates["mujoco"]) <= 0.03, rates
