"""Vectorised PyBullet envs through stable-baselines3's VecEnvs (one PyBullet client per env)."""

from __future__ import annotations

import logging
from typing import Callable

from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rlcore.config import Params
from rlcore.envs.bullet import ReachEnv
from rlcore.targets import TargetCache

log = logging.getLogger(__name__)


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
