"""The reach env on both engines (PyBullet and MuJoCo): gymnasium contract, seeding, velocity
limits, success, rendering, vectorised workers. Each test runs once per engine (`-k mujoco` runs
the MuJoCo half where pybullet is not installed)."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlcore.envs import ENV_ID, MUJOCO_ENV_ID
from rlcore.envs.engines import reach_env_class
from rlcore.envs.task import obs_size


@pytest.fixture(params=["pybullet", "mujoco"])
def engine_params(request, small_params):
    params = small_params.model_copy(deep=True)
    params.env.physics = request.param
    return params


@pytest.fixture
def ReachEnv(engine_params):  # noqa: N802 - the engine's env class, under the name the tests read
    cls = reach_env_class(engine_params)
    assert cls.engine == engine_params.env.physics
    return cls


@pytest.fixture
def env(ReachEnv, engine_params, small_cache):  # noqa: N803
    e = ReachEnv(engine_params.env, engine_params.robot, small_cache)
    yield e
    e.close()


def test_check_env_and_registration(ReachEnv, engine_params, small_cache):  # noqa: N803
    check_env(ReachEnv(engine_params.env, engine_params.robot, small_cache), skip_render_check=True)
    registered = gym.make(ENV_ID if ReachEnv.engine == "pybullet" else MUJOCO_ENV_ID)
    assert registered.unwrapped.engine == ReachEnv.engine
    obs, _ = registered.reset(seed=0)
    assert obs.shape == (obs_size(6),) and obs.dtype == np.float32
    registered.close()


def test_seeding_gives_identical_episodes(ReachEnv, engine_params, small_cache):  # noqa: N803
    def episode(seed):
        e = ReachEnv(engine_params.env, engine_params.robot, small_cache)
        obs, _ = e.reset(seed=seed)
        rng = np.random.default_rng(123)
        trace = [obs]
        for _ in range(20):
            obs, reward, *_ = e.step(rng.uniform(-1, 1, 6).astype(np.float32))
            trace.append(np.append(obs, reward))
        e.close()
        return np.concatenate(trace)

    assert np.array_equal(episode(7), episode(7))
    assert not np.array_equal(episode(7), episode(8))


def test_velocity_limit_enforced(env):
    env.reset(seed=0)
    worst = 0.0
    for t in range(env.cfg.episode_steps):
        sign = 1.0 if (t // 10) % 2 == 0 else -1.0
        obs, *_ = env.step(np.full(6, sign, dtype=np.float32))
        q, qd = env.arm.joint_state()
        worst = max(worst, float(np.max(np.abs(qd) / env.arm.vmax)))
        assert np.all(q >= env.arm.lower - 1e-3) and np.all(q <= env.arm.upper + 1e-3)
    assert 0.5 < worst <= 1.0 + 1e-3  # moving hard, never faster than the URDF limit


def test_observation_layout(env):
    obs, info = env.reset(seed=1)
    d = env.dof
    flange = env.arm.ee_position(fk=True)
    assert np.allclose(obs[2 * d : 2 * d + 3], flange, atol=1e-5)
    assert np.allclose(obs[2 * d + 3 : 2 * d + 6], env.target, atol=1e-6)
    assert np.allclose(obs[2 * d + 6 : 2 * d + 9], env.target - flange, atol=1e-5)
    assert info["distance"] == pytest.approx(np.linalg.norm(env.target - flange), abs=1e-5)
    assert np.all(np.abs(obs[:d]) <= 1.0)


def test_success_logic_and_no_termination(env):
    env.reset(seed=0)
    flange = env.arm.ee_position(fk=True)
    env.reset(seed=0, options={"target": flange + np.array([0.0, 0.0, 0.005])})
    rewards = []
    for t in range(env.cfg.episode_steps):
        _, reward, terminated, truncated, info = env.step(np.zeros(6, dtype=np.float32))
        rewards.append(reward)
        assert not terminated  # holding the target never ends the episode
        assert truncated == (t == env.cfg.episode_steps - 1)
    assert info["is_success"] and info["distance"] < env.cfg.success_radius
    env.reset(seed=0, options={"target": flange + np.array([0.2, 0.0, 0.0])})
    _, far_reward, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert not info["is_success"] and far_reward < min(rewards)


def test_render_shows_target(ReachEnv, engine_params, small_cache):  # noqa: N803
    e = ReachEnv(engine_params.env, engine_params.robot, small_cache, render_mode="rgb_array")
    e.reset(seed=0)
    frame = e.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    red = (frame[:, :, 0] > 100) & (frame[:, :, 1] < 40) & (frame[:, :, 2] < 40)
    assert red.sum() > 10  # the target sphere is visible
    e.close()


def test_chunked_workers_equal_to_in_process(engine_params, small_cache):
    """One worker process per core, each stepping a chunk; chunking changes no numbers."""
    import torch

    from rlcore.envs.vec import PhysicsVecEnv, make_chunked_vec_env
    from rlcore.runtime.devices import cpu_cores

    cpu = torch.device("cpu")
    sub = PhysicsVecEnv(make_chunked_vec_env(engine_params, small_cache, 4, kind="auto", seed=7)[0], cpu)
    ref = PhysicsVecEnv(make_chunked_vec_env(engine_params, small_cache, 4, kind="dummy", seed=7)[0], cpu)
    try:
        assert sub.workers == (2 if cpu_cores() >= 2 else 0)
        assert torch.equal(sub.reset(), ref.reset())
        actions = torch.rand(70, 4, sub.act_dim) * 2 - 1  # past one 60-step episode: auto-resets too
        for a in actions:
            x, y = sub.step(a), ref.step(a)
            for field, u, v in zip(x._fields, x, y):
                assert (u == v).all() if isinstance(u, torch.Tensor) else u == v, field
    finally:
        sub.close()
        ref.close()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="this OS cannot pin processes to cores")
def test_chunked_workers_pinned_one_core_each(engine_params, small_cache):
    import torch

    from rlcore.envs.vec import PhysicsVecEnv, make_chunked_vec_env
    from rlcore.runtime.devices import cpu_cores

    if cpu_cores() < 2:
        pytest.skip("one core: a single in-process chunk, nothing to pin")
    venv, _ = make_chunked_vec_env(engine_params, small_cache, 4, kind="auto", seed=7)
    sub = PhysicsVecEnv(venv, torch.device("cpu"))
    try:
        cores = [os.sched_getaffinity(p.pid) for p in sub.venv.processes]
        assert all(len(c) == 1 for c in cores) and len(set.union(*cores)) == 2
    finally:
        sub.close()


@pytest.mark.parametrize("method", ["auto", "spawn"])
def test_shared_memory_workers_equal_to_in_process(engine_params, small_cache, method):
    """The shared-memory vec env gives the same numbers as the chunks stepped in-process, past an
    episode's end (auto-resets), under the default start method and under spawn (Windows')."""
    import torch

    from rlcore.envs.shared_vec import SharedMemoryVecEnv
    from rlcore.envs.vec import PhysicsVecEnv, make_chunked_vec_env

    cpu = torch.device("cpu")
    spawn_params = engine_params.model_copy(
        update={"hardware": engine_params.hardware.model_copy(update={"mp_start_method": method})}
    )
    shared = SharedMemoryVecEnv(spawn_params, small_cache, 5, cpu, seed=7, workers=2)
    ref = PhysicsVecEnv(make_chunked_vec_env(engine_params, small_cache, 5, kind="dummy", seed=7)[0], cpu)
    try:
        assert shared.workers == 2 and (method != "spawn" or "spawn" in shared.note)
        shared.set_level(1)
        ref.set_level(1)
        assert torch.equal(shared.reset(), ref.reset())
        actions = torch.rand(70, 5, shared.act_dim) * 2 - 1  # past one 60-step episode: auto-resets too
        ends = 0
        for a in actions:
            x, y = shared.step(a), ref.step(a)
            ends += int(x.done.sum())
            for field, u, v in zip(x._fields, x, y):
                assert (u == v).all() if isinstance(u, torch.Tensor) else u == v, field
        assert ends == 5
    finally:
        shared.close()
        ref.close()
    assert not any(p.is_alive() for p in shared._procs)


def test_shared_memory_worker_failure_and_death_are_errors_not_hangs(engine_params, small_cache, monkeypatch):
    import copy

    import numpy as np
    import torch

    from rlcore.envs import shared_vec
    from rlcore.envs.shared_vec import SharedMemoryVecEnv, WorkerError

    broken = copy.copy(small_cache)
    broken.positions = np.zeros((0, 3))  # any target index is out of range: reset raises in the worker
    env = SharedMemoryVecEnv(engine_params, broken, 4, torch.device("cpu"), workers=2)
    try:
        with pytest.raises(WorkerError, match="ValueError: operands could not be broadcast"):
            env.reset()
    finally:
        env.close()
    monkeypatch.setattr(shared_vec, "WAIT_S", 0.2)
    env = SharedMemoryVecEnv(engine_params, small_cache, 4, torch.device("cpu"), workers=2)
    try:
        env.reset()
        env._procs[1].kill()
        env._procs[1].join()
        with pytest.raises(WorkerError, match="rlcore-env-1 died"):
            env.step(torch.zeros(4, env.act_dim))
    finally:
        env.close()


def test_training_env_is_shared_memory_by_default(engine_params, small_cache):
    import torch

    from rlcore.envs.factory import make_env
    from rlcore.envs.shared_vec import SharedMemoryVecEnv
    from rlcore.runtime.devices import cpu_cores

    if cpu_cores() < 2:
        pytest.skip("one core: the envs run in-process")
    env = make_env(
        engine_params.model_copy(update={"env": engine_params.env.model_copy(update={"backend": "physics"})}),
        small_cache,
        4,
        torch.device("cpu"),
        seed=0,
    )
    try:
        assert isinstance(env, SharedMemoryVecEnv) and env.workers == 2
    finally:
        env.close()


def test_bench_vec_table_measures_each_vec_env(engine_params):
    """`bench vec`: each kind measured in alternating rounds, efficiency against the single env."""
    from rlcore.bench.tables import vec_table

    table = vec_table(engine_params, 4, 64, rounds=3)
    rows = {r["kind"]: r for r in table["rows"]}
    assert set(rows) == {"shared", "subproc", "dummy"}
    assert rows["shared"]["note"].startswith("shared memory") and rows["dummy"]["note"] == "dummy"
    from rlcore.stats import Spread

    single = Spread(table["machine"]["single_env"]["runs"]).median
    for r in rows.values():
        assert len(r["spread"].runs) == 3 and r["fps"] > 0
        assert r["efficiency"] == pytest.approx(r["fps"] / (table["cores"] * single))
