"""Vectorised PyBullet envs through stable-baselines3's VecEnvs (one PyBullet client per env)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rlcore.config import Params
from rlcore.envs.bullet import ReachEnv
from rlcore.targets import TargetCache

log = logging.getLogger(__name__)


class StepResult(NamedTuple):
    """One step of n envs, as tensors on the env device.

    The reach task has no terminal states: `done` marks episodes that hit the time limit, whose
    value the trainer bootstraps from `final_obs` (the last observation before the auto-reset;
    equal to `obs` where not done). `success`, `distance` and `episode_return` are meaningful
    where `done`.
    """

    obs: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    final_obs: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    episode_return: torch.Tensor
    any_done: bool  # known on the host without a device sync


def env_factory(
    params: Params, targets: TargetCache | None, mode: str = "train", seed: int = 0
) -> Callable[[], ReachEnv]:
    """A picklable constructor: the PyBullet client is created inside the worker process."""

    def make() -> ReachEnv:
        env = ReachEnv(params, targets, mode=mode)
        env.reset(seed=seed)
        return env

    return make


def make_vec_env(
    params: Params, targets: TargetCache | None, n_envs: int, kind: str = "auto",
    mode: str = "train", seed: int = 0,
) -> tuple[VecEnv, str]:
    """Build n_envs PyBullet envs; returns the VecEnv and a note on which kind and why.

    kind: "subproc", "dummy", or "auto" (subprocesses when n_envs > 1, falling back to
    DummyVecEnv with the reason when processes cannot start).
    """
    fns = [env_factory(params, targets, mode, seed + i) for i in range(n_envs)]
    if kind == "dummy" or (kind == "auto" and n_envs == 1):
        venv = DummyVecEnv(fns)
        note = "dummy"
    else:
        try:
            venv = SubprocVecEnv(fns, start_method="forkserver")
            note = "subproc"
        except Exception as err:  # noqa: BLE001 - any start failure means: run in-process
            if kind == "subproc":
                raise
            log.warning("SubprocVecEnv could not start (%s); using DummyVecEnv", err)
            venv = DummyVecEnv(fns)
            note = f"dummy (subprocesses failed: {err})"
    venv.seed(seed)
    return venv, note


class BulletVecEnv:
    """PyBullet envs behind the same tensor API as BatchedReachEnv: one batched transfer each
    way per step (actions to the host, observations and rewards back to the device)."""

    def __init__(self, venv: VecEnv, device: torch.device, note: str = "") -> None:
        self.venv = venv
        self.device = device
        self.note = note
        self.num_envs = venv.num_envs
        self.obs_dim = venv.observation_space.shape[0]
        self.act_dim = venv.action_space.shape[0]
        self._returns = np.zeros(self.num_envs, dtype=np.float32)

    def set_level(self, level: int) -> None:
        self.venv.env_method("set_level", int(level))

    def reset(self) -> torch.Tensor:
        self._returns[:] = 0
        return torch.as_tensor(self.venv.reset(), device=self.device)

    def step(self, actions: torch.Tensor) -> StepResult:
        obs, reward, done, infos = self.venv.step(actions.detach().cpu().numpy())
        self._returns += reward
        final_obs = obs.copy()
        success = np.zeros(self.num_envs, dtype=bool)
        distance = np.array([info["distance"] for info in infos], dtype=np.float32)
        returns = self._returns.copy()
        for i in np.flatnonzero(done):
            final_obs[i] = infos[i]["terminal_observation"]
            success[i] = infos[i]["is_success"]
            self._returns[i] = 0
        arrays = (obs, reward.astype(np.float32), done, final_obs, success, distance, returns)
        return StepResult(*(torch.as_tensor(a, device=self.device) for a in arrays), bool(done.any()))

    def close(self) -> None:
        self.venv.close()
