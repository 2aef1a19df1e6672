"""The reach env of `env.physics`'s engine: PyBullet's ReachEnv or MuJoCo's MujocoReachEnv."""

from __future__ import annotations

from rlcore.config import Params
from rlcore.envs.reach import ArmReachEnv
from rlcore.robots.engines import engine_of
from rlcore.targets import TargetCache


def reach_env_class(params: Params) -> type[ArmReachEnv]:
    """The env class of the engine `params.env.physics` resolves to here."""
    if engine_of(params) == "mujoco":
        from rlcore.envs.mujoco_reach import MujocoReachEnv

        return MujocoReachEnv
    from rlcore.envs.bullet import ReachEnv

    return ReachEnv


def make_reach_env(
    params: Params,
    targets: TargetCache | None = None,
    mode: str = "train",
    render_mode: str | None = None,
    gui: bool = False,
) -> ArmReachEnv:
    """One reach env on `env.physics`'s engine (train or eval physics by `mode`)."""
    return reach_env_class(params)(params, targets, mode=mode, render_mode=render_mode, gui=gui)
