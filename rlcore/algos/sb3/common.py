"""What stable-baselines3's PPO, SAC and DQN share inside rlcore: the vec env they train on,
episode tallies under rlcore's metric names, VecNormalize as rlcore's normaliser, the run handle
callbacks receive, and the summary they return."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rlcore.algos.base import TrainSummary
from rlcore.config.schema import ConfigError, Params
from rlcore.envs.targets import Curriculum, TargetCache
from rlcore.envs.vec import faster_vec_env, make_vec_env
from rlcore.policy.networks import RunningNorm


def check_physics_backend(name: str, params: Params) -> None:
    """SB3 drives the physics engines' envs only, not the twin."""
    if params.env.backend != "physics":
        raise ConfigError(f"train.algo = {name!r} needs env.backend = 'physics' (SB3 does not drive the twin)")


def normalised_vec_env(params: Params, targets: TargetCache, n_envs: int, wrap: Any = None) -> tuple[VecNormalize, str]:
    """SB3's faster vec env here (measured, under `train.vec_env: auto`), optionally wrapped
    (DQN's discrete actions), under VecNormalize; returns it and a note on the choice."""
    kind, why = params.train.vec_env, "as train.vec_env asks"
    if kind in ("auto", "shared"):  # SB3 drives its own VecEnvs: its faster one here, measured
        kind, why = faster_vec_env(params, n_envs), f"measured faster for {n_envs} envs here"
    venv, vec_note = make_vec_env(params, targets, n_envs, kind=kind, seed=params.seed)
    try:
        inner: VecEnv = wrap(venv) if wrap else venv
        return VecNormalize(inner, norm_obs=params.train.obs_norm, norm_reward=False, clip_obs=10.0), (
            f"{vec_note} x{n_envs} ({why}); SB3 runs do not resume from checkpoints, starting fresh"
        )
    except Exception:
        venv.close()
        raise


class Sb3Run:
    """The run handle SB3 algorithms give `on_start` (rlcore.algos.base.RunHandle): `policy()`
    converts the model as it stands; the recorders honour the two stop flags."""

    def __init__(self, to_bundle: Any) -> None:
        self.extra: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self.tags: dict[str, str] = {}
        self.finish_requested = False
        self.stop_requested = False
        self._to_bundle = to_bundle

    def keep_going(self) -> bool:
        """An SB3 callback's answer: False ends `learn` (a caller's limit or a Ctrl-C)."""
        return not (self.finish_requested or self.stop_requested)

    def policy(self) -> dict[str, Any]:
        return self._to_bundle()


def curriculum_for(params: Params, targets: TargetCache, venv: VecEnv, n_envs: int) -> Curriculum:
    """The curriculum over `n_envs` envs, its level set in every env."""
    curriculum = Curriculum.from_config(params.env.curriculum, targets.n_levels, in_flight=n_envs)
    venv.env_method("set_level", curriculum.level)
    return curriculum


class EpisodeTally:
    """Returns and success flags of the episodes that end in a vec env's steps, summed per env
    until each ends; `take()` hands over those ended since the last call."""

    def __init__(self) -> None:
        self.returns: np.ndarray | None = None
        self.ended: list[tuple[bool, float]] = []

    def add(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> list[bool]:
        """Add one vec-env step; returns the success flags of the episodes it ended."""
        if self.returns is None:
            self.returns = np.zeros(len(rewards))
        self.returns += rewards
        flags = []
        for i in np.flatnonzero(dones):
            flags.append(bool(infos[i]["is_success"]))
            self.ended.append((flags[-1], float(self.returns[i])))
            self.returns[i] = 0.0
        return flags

    def take(self) -> list[tuple[bool, float]]:
        """(success, return) of every episode ended since the last call."""
        ended, self.ended = self.ended, []
        return ended


def episode_metrics(ended: list[tuple[bool, float]]) -> dict[str, float]:
    """success_rate and episode_return over ended episodes (EpisodeTally.take)."""
    return {
        "success_rate": float(np.mean([s for s, _ in ended])),
        "episode_return": float(np.mean([r for _, r in ended])),
    }


def norm_from_vecnormalize(venv: VecNormalize | None, obs_dim: int) -> RunningNorm | None:
    """VecNormalize's observation statistics as rlcore's normaliser (None without one)."""
    if venv is None:
        return None
    norm = RunningNorm(obs_dim, clip=venv.clip_obs, eps=venv.epsilon)
    norm.mean.copy_(torch.as_tensor(venv.obs_rms.mean, dtype=torch.float32))
    norm.var.copy_(torch.as_tensor(venv.obs_rms.var, dtype=torch.float32))
    norm.count.fill_(float(venv.obs_rms.count))
    norm.set_extra_state({"host_count": float(venv.obs_rms.count)})
    return norm


def run_summary(model: Any, wall: float, recorder: Any, curriculum: Curriculum) -> TrainSummary:
    """An SB3 run's summary (rlcore.algos.base.TrainSummary)."""
    return TrainSummary(
        steps=model.num_timesteps,
        wall_s=wall,
        fps=model.num_timesteps / wall,
        success_rate=recorder.last["success_rate"],
        episode_return=recorder.last["episode_return"],
        curriculum_level=curriculum.level,
        iterations=len(recorder.history),
        history=recorder.history,
    )
