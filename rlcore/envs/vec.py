"""Vectorised physics envs (PyBullet or MuJoCo, by `env.physics`) through stable-baselines3's
VecEnvs (one PyBullet client or MuJoCo model per env), behind the tensor API
(rlcore.envs.task.StepResult) that both env backends share."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rlcore.config.schema import Params
from rlcore.envs.engines import make_reach_env
from rlcore.envs.reach import ArmReachEnv
from rlcore.envs.targets import TargetCache
from rlcore.envs.task import StepResult
from rlcore.runtime.oscompat import pin_to_cpu, preload_for_forkserver, resolve_start_method
from rlcore.runtime.sharing import worker_cores

log = logging.getLogger(__name__)


def env_factory(
    params: Params, targets: TargetCache | None, mode: str = "train", seed: int = 0
) -> Callable[[], ArmReachEnv]:
    """A picklable constructor: the physics client is created inside the worker process."""

    def make() -> ArmReachEnv:
        env = make_reach_env(params, targets, mode=mode)
        env.reset(seed=seed)
        return env

    return make


def make_vec_env(
    params: Params,
    targets: TargetCache | None,
    n_envs: int,
    kind: str = "auto",
    mode: str = "train",
    seed: int = 0,
) -> tuple[VecEnv, str]:
    """Build n_envs PyBullet envs; returns the VecEnv and a note on which kind and why.

    kind: "subproc", "dummy", or "auto" (subprocesses when n_envs > 1, falling back to
    DummyVecEnv with the reason when processes cannot start).
    """
    fns = [env_factory(params, targets, mode, seed + i) for i in range(n_envs)]
    if kind == "dummy" or (kind == "auto" and n_envs == 1):
        venv, note = DummyVecEnv(fns), "dummy"
    else:
        venv, note = _subproc_or_dummy(fns, fns, kind, "subproc", params.hardware.mp_start_method)
    venv.seed(seed)
    return venv, note


def vec_env_fps(params: Params, kind: str, n_envs: int, steps: int = 3000, seed: int = 0) -> float:
    """Steps/s (summed over envs) of an SB3 VecEnv of n_envs ReachEnvs, start-up excluded."""
    venv, _ = make_vec_env(params, None, n_envs, kind=kind, seed=seed)
    try:
        venv.reset()
        n_iters = max(1, steps // n_envs)
        rng = np.random.default_rng(seed)
        actions = rng.uniform(-1, 1, (n_iters, n_envs, venv.action_space.shape[0])).astype(np.float32)
        venv.step(actions[0])  # warm-up
        start = time.perf_counter()
        for a in actions:
            venv.step(a)
        return n_iters * n_envs / (time.perf_counter() - start)
    finally:
        venv.close()


def faster_vec_env(params: Params, n_envs: int, steps: int = 2000) -> str:
    """SB3's faster vec env for n_envs on this machine, measured: "dummy" or "subproc"."""
    dummy = vec_env_fps(params, "dummy", n_envs, steps)
    sub = vec_env_fps(params, "subproc", n_envs, steps) if n_envs > 1 else 0.0
    return "dummy" if dummy >= sub else "subproc"


def _subproc_or_dummy(fns: list, in_process: list, kind: str, note: str, start_method: str) -> tuple[VecEnv, str]:
    """SubprocVecEnv(fns) with `hardware.mp_start_method`; where processes cannot start,
    DummyVecEnv(in_process) with the reason (unless kind == "subproc" was asked for explicitly)."""
    method = resolve_start_method(start_method)
    # The fork server imports this module (torch, SB3, PyBullet) once and forks workers from it:
    # 64 workers started in 1.9 s instead of 50 s, each importing everything itself (spawn).
    preload_for_forkserver(method, [__name__])
    try:
        return SubprocVecEnv(fns, start_method=method), f"{note}, {method}"
    except Exception as err:  # noqa: BLE001 - any start failure means: run in-process
        if kind == "subproc":
            raise
        log.warning("SubprocVecEnv could not start (%s); using DummyVecEnv", err)
        return DummyVecEnv(in_process), f"dummy (subprocesses failed: {err})"


class ChunkEnv(gym.Env):
    """k ReachEnvs in one process, stepped together (observations (k, obs_dim), actions
    (k, act_dim)). Sub-envs reset themselves when their episode ends, so the chunk never reports
    done; per-env rewards, ends, final observations and success flags travel in `info`. One
    SubprocVecEnv worker per CPU core, each stepping a chunk, beats one process per env.

    `cpu` pins the process that builds the chunk to that core (a worker's own process). Unpinned,
    Linux often wakes both workers on the core that sent them their actions, and one waits for
    the other: measured on 2 cores, pinning raised 2 workers x 32 envs from 19.7k to 22.7k steps/s.
    """

    def __init__(
        self, params: Params, targets: TargetCache | None, mode: str, seeds: list[int], cpu: int | None = None
    ) -> None:
        pin_to_cpu(cpu)
        self.envs = [make_reach_env(params, targets, mode=mode) for _ in seeds]
        self.seeds = seeds
        k, single = len(seeds), self.envs[0]
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (k, *single.observation_space.shape), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (k, *single.action_space.shape), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs = [env.reset(seed=s + (seed or 0))[0] for env, s in zip(self.envs, self.seeds)]
        return np.stack(obs), {}

    def step(self, actions: np.ndarray):
        k = len(self.envs)
        obs = np.empty(self.observation_space.shape, dtype=np.float32)
        final = np.empty_like(obs)
        rewards, distance = np.empty(k, np.float32), np.empty(k, np.float32)
        done, success, ended = np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, bool)
        for i, env in enumerate(self.envs):
            o, r, terminated, truncated, info = env.step(actions[i])
            rewards[i], distance[i], final[i], ended[i] = r, info["distance"], o, terminated
            if terminated or truncated:
                done[i], success[i] = True, info["is_success"]
                o, _ = env.reset()
            obs[i] = o
        info = {"rewards": rewards, "dones": done, "final_obs": final, "success": success, "distance": distance}
        info["terminated"] = ended
        return obs, float(rewards.sum()), False, False, info

    def set_level(self, level: int) -> None:
        for env in self.envs:
            env.set_level(level)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_chunked_vec_env(
    params: Params,
    targets: TargetCache | None,
    n_envs: int,
    kind: str = "auto",
    mode: str = "train",
    seed: int = 0,
    workers: int | None = None,
) -> tuple[VecEnv, str]:
    """n_envs PyBullet envs in chunks: one SubprocVecEnv worker per core ("auto"/"subproc"), or
    one in-process chunk ("dummy"); falls back to in-process with the reason if workers fail."""
    cpus = worker_cores(params.hardware.cores)  # the cores to pin workers to (None: not pinned)
    workers = min(n_envs, workers or len(cpus))
    if kind == "dummy" or workers == 1:
        kind, workers = "dummy", 1
    bounds = np.linspace(0, n_envs, workers + 1).astype(int)
    fns = [
        partial(ChunkEnv, params, targets, mode, list(range(seed + lo, seed + hi)), cpus[i % len(cpus)])
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    in_process = [partial(ChunkEnv, params, targets, mode, list(range(seed, seed + n_envs)))]
    if kind == "dummy":
        return DummyVecEnv(in_process), "dummy"
    return _subproc_or_dummy(fns, in_process, kind, f"subproc ({workers} workers)", params.hardware.mp_start_method)


class PhysicsVecEnv:
    """PyBullet envs behind the same tensor API as BatchedReachEnv: one batched transfer each
    way per step (actions to the host, observations and rewards back to the device)."""

    def __init__(self, venv: VecEnv, device: torch.device, note: str = "", workcell: bool = False) -> None:
        self.venv = venv
        self.device = device
        self.note = note
        chunk = venv.observation_space.shape
        self.num_envs = venv.num_envs * chunk[0]
        self.workers = venv.num_envs if isinstance(venv, SubprocVecEnv) else 0  # worker processes
        self.obs_dim = chunk[1]
        self.act_dim = venv.action_space.shape[1]
        self._returns = np.zeros(self.num_envs, dtype=np.float32)
        self.workcell = workcell

    def set_level(self, level: int) -> None:
        self.venv.env_method("set_level", int(level))

    def reset(self) -> torch.Tensor:
        self._returns[:] = 0
        return torch.as_tensor(self.venv.reset().reshape(self.num_envs, -1), device=self.device)

    def step(self, actions: torch.Tensor) -> StepResult:
        a = actions.detach().cpu().numpy().reshape(self.venv.num_envs, -1, self.act_dim)
        obs, _, _, infos = self.venv.step(a)
        cat = {
            k: np.concatenate([info[k] for info in infos])
            for k in ("rewards", "dones", "final_obs", "success", "distance", "terminated")
        }
        self._returns += cat["rewards"]
        returns = self._returns.copy()
        self._returns[cat["dones"]] = 0
        arrays = (
            obs.reshape(self.num_envs, -1),
            cat["rewards"],
            cat["dones"],
            cat["final_obs"],
            cat["success"],
            cat["distance"],
            returns,
        )
        tensors = [torch.as_tensor(a, device=self.device) for a in (*arrays, cat["terminated"])]
        return StepResult(*tensors[:-1], bool(cat["dones"].any()), tensors[-1] if self.workcell else None)

    def close(self) -> None:
        self.venv.close()
