"""The one env factory: the training env of `env.backend`, whatever engine steps it."""

from __future__ import annotations

from typing import Any

import torch

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache


def make_env(
    params: Params, targets: TargetCache | None, n_envs: int, device: torch.device, seed: int, mode: str = "train"
) -> Any:
    """The training env for `env.backend`: the batched twin on `device`, or physics-engine envs in
    worker processes (PyBullet or MuJoCo, by `env.physics`). Both give the same tensor API."""
    if params.env.backend == "twin":
        from rlcore.envs.batched import BatchedReachEnv

        return BatchedReachEnv(params.env, params.robot, targets, n_envs, device, mode=mode, seed=seed)
    from rlcore.envs.shared_vec import make_physics_vec_env

    return make_physics_vec_env(params, targets, n_envs, device, mode=mode, seed=seed)
