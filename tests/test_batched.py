"""The batched twin against the PyBullet reference: trajectories, observations, rewards, resets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore.envs.batched import BatchedReachEnv
from rlcore.envs.bullet import ReachEnv, reach_reward

# Worst flange deviation between twin and PyBullet (training physics) over whole episodes from
# the same start state. Measured over 10 seeds (README): smooth, policy-like action sequences
# 5.5 mm worst (1.2 mm median); independent uniform actions each step (bang-bang, where PyBullet's
# inertia and motor limits show) 25 mm worst (7.6 mm median).
TOLERANCE_SMOOTH_M = 0.01
TOLERANCE_RANDOM_M = 0.03


def twin_like(bullet: ReachEnv, params, n=1) -> BatchedReachEnv:
    twin = BatchedReachEnv(params.env, params.robot, None, n, "cpu")
    twin.reset()
    q, _ = bullet.arm.joint_state()
    twin.q = torch.tensor(q, dtype=torch.float32).repeat(n, 1)
    twin.q_cmd = twin.q.clone()
    twin.qd = torch.zeros_like(twin.q)
    twin.prev_action = torch.zeros_like(twin.q)
    twin.target = torch.tensor(bullet.target, dtype=torch.float32).repeat(n, 1)
    return twin


@pytest.mark.parametrize(("seed", "smooth"), [(0, True), (1, True), (2, True), (0, False), (1, False)])
def test_trajectory_agrees_with_pybullet(small_params, small_cache, seed, smooth):
    bullet = ReachEnv(small_params.env, small_params.robot, small_cache)
    bullet.reset(seed=seed)
    twin = twin_like(bullet, small_params)
    rng = np.random.default_rng(seed)
    worst = 0.0
    a = np.zeros(6, dtype=np.float32)
    for _ in range(small_params.env.episode_steps - 1):
        if smooth:
            a = np.clip(a + rng.uniform(-0.3, 0.3, 6), -1, 1).astype(np.float32)
        else:
            a = rng.uniform(-1, 1, 6).astype(np.float32)
        bullet.step(a)
        twin.step(torch.tensor(a).unsqueeze(0))
        flange = bullet.arm.ee_position(fk=True)
        worst = max(worst, float(np.linalg.norm(flange - twin.fk.ee_position(twin.q)[0].numpy())))
    bullet.close()
    tolerance = TOLERANCE_SMOOTH_M if smooth else TOLERANCE_RANDOM_M
    assert worst < tolerance, f"worst flange deviation {worst * 1000:.1f} mm"


def test_observation_and_reward_agree_on_identical_states(small_params, small_cache):
    bullet = ReachEnv(small_params.env, small_params.robot, small_cache)
    obs_b, _ = bullet.reset(seed=3)
    twin = twin_like(bullet, small_params)
    obs_t = twin._observe()[0][0].numpy()
    assert np.allclose(obs_b, obs_t, atol=1e-4)
    # identical state, then one step each with the same action: same reward formula
    a = np.full(6, 0.3, dtype=np.float32)
    _, r_b, _, _, info = bullet.step(a)
    d = torch.tensor([info["distance"]])
    r_t = reach_reward(d, torch.tensor([float(np.sum(a**2))]), small_params.env, 6, tanh=torch.tanh)
    assert r_t.item() == pytest.approx(r_b, abs=1e-5)
    bullet.close()


def test_auto_reset_after_episode_length(small_params, small_cache):
    twin = BatchedReachEnv(small_params.env, small_params.robot, small_cache, 8, "cpu")
    first = twin.reset()
    targets0 = twin.target.clone()
    for t in range(small_params.env.episode_steps):
        res = twin.step(torch.ones(8, 6))
        assert res.done.all().item() == (t == small_params.env.episode_steps - 1)
        assert res.any_done == (t == small_params.env.episode_steps - 1)
    assert not torch.equal(res.final_obs, res.obs)  # final_obs is from before the reset
    assert torch.allclose(res.obs[:, 6:12], torch.zeros(8, 6))  # velocities reset
    assert not torch.equal(twin.target, targets0)
    assert torch.all((twin.q - twin.home).abs() <= small_params.env.reset_noise + 1e-6)
    assert twin.t == 0 and first.shape == res.obs.shape


def test_targets_respect_split_and_curriculum(small_cache, small_params):
    twin = BatchedReachEnv(small_params.env, small_params.robot, small_cache, 4096, "cpu")
    train_pos = {tuple(p) for p in small_cache.positions[small_cache.indices("train", 0)]}
    held = {tuple(p) for p in small_cache.positions[small_cache.indices("heldout")]}
    twin.set_level(0)
    twin.reset()
    sampled = {tuple(p) for p in twin.target.numpy()}
    assert sampled <= train_pos and not (sampled & held)
    twin.set_level(2)
    twin.reset()
    levels = {
        int(small_cache.level[np.flatnonzero((small_cache.positions == p).all(1))[0]])
        for p in twin.target.numpy()[:200]
    }
    assert levels == {0, 1, 2}


def test_no_cache_targets_are_reachable(small_params):
    twin = BatchedReachEnv(small_params.env, small_params.robot, None, 64, "cpu")
    twin.reset()
    assert twin.target.norm(dim=1).max().item() < 1.2  # within the arm's reach


def test_step_reward_and_success_agree_with_pybullet(small_params, small_cache):
    """Through BatchedReachEnv.step (not the shared reward function alone): from identical states
    whose episode ends at this step, holding still (action 0) after a previous action, the twin's
    reward, done and success flags equal PyBullet's, for targets inside and outside the radius."""
    cfg = small_params.env
    bullet = ReachEnv(small_params.env, small_params.robot, small_cache)
    bullet.reset(seed=0)
    rng = np.random.default_rng(7)
    radii = [0.004, 0.012, 0.016, 0.026, 0.05, 0.2]  # away from the 2 cm edge by > the arm's sag
    n = 48
    q = rng.uniform(bullet.arm.lower * 0.8, bullet.arm.upper * 0.8, size=(n, 6))
    prev = rng.uniform(-1, 1, size=(n, 6)).astype(np.float32)
    twin = BatchedReachEnv(small_params.env, small_params.robot, None, n, "cpu")
    twin.reset()
    flange = twin.fk.ee_position(torch.tensor(q, dtype=torch.float32)).numpy()
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    target = flange + direction * np.resize(radii, n)[:, None]
    twin.q = torch.tensor(q, dtype=torch.float32)
    twin.q_cmd, twin.qd = twin.q.clone(), torch.zeros_like(twin.q)
    twin.prev_action, twin.target = torch.tensor(prev), torch.tensor(target, dtype=torch.float32)
    twin.t = cfg.episode_steps - 1
    res = twin.step(torch.zeros(n, 6))
    assert bool(res.done.all()) and res.any_done
    for k in range(n):
        bullet.arm.set_joints(q[k])
        bullet.q_cmd, bullet.prev_action = q[k].copy(), prev[k].copy()
        bullet.target, bullet.steps = target[k], cfg.episode_steps - 1
        _, reward, terminated, truncated, info = bullet.step(np.zeros(6, dtype=np.float32))
        assert truncated and not terminated
        # PyBullet's arm sags by up to ~0.1 mm in the step (the twin holds exactly): the rewards
        # may differ by the reward's slope in distance times that sag, and no more
        sag = float(np.linalg.norm(bullet.arm.ee_position(fk=True) - flange[k]))
        slope = cfg.reward.distance + cfg.reward.precision / cfg.reward.precision_sigma
        slope += cfg.reward.fine / cfg.reward.fine_sigma
        assert abs(float(res.reward[k]) - reward) <= slope * sag + 1e-5, (k, sag)
        assert bool(res.success[k]) == bool(info["is_success"]), (k, info["distance"])
    bullet.close()
    assert 0 < int(res.success.sum()) < n  # both outcomes were checked


def test_action_power_moves_the_command_by_the_signed_power_in_both_envs(small_params, small_cache):
    """env.action_power 2: an action a commands sign(a) a^2 of the velocity limit, in the twin and
    in the PyBullet env alike (a half action moves the command a quarter step)."""
    params = small_params.model_copy(
        update={"env": small_params.env.model_copy(update={"action_power": 2.0, "reset_noise": 0.0})}
    )
    action = np.array([0.5, -0.5, 1.0, -1.0, 0.1, 0.0], dtype=np.float32)
    expected = np.sign(action) * action**2
    bullet = ReachEnv(params.env, params.robot, small_cache)
    bullet.reset(seed=0)
    start = bullet.q_cmd.copy()
    bullet.step(action)
    step = (bullet.q_cmd - start) / (bullet.arm.vmax * bullet.dt)
    assert step == pytest.approx(expected, abs=1e-6)
    twin = BatchedReachEnv(params.env, params.robot, None, 2, "cpu")
    twin.reset()
    start = twin.q_cmd.clone()
    twin.step(torch.tensor(np.stack([action, action])))
    step = ((twin.q_cmd - start) / (twin.vmax * twin.dt)).numpy()
    assert step == pytest.approx(np.stack([expected, expected]), abs=1e-5)
