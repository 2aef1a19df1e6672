"""Which physics engine runs the PyBullet-or-MuJoCo parts (target cache, evaluation, the physics
training backend, the SB3 baseline), from `env.physics`: auto | pybullet | mujoco.

`auto` means PyBullet where it imports (the reference every figure so far was taken on), else
MuJoCo, which installs from wheels on Windows, macOS and Linux for every supported Python.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from rlcore.config.schema import ConfigError, Params, RobotConfig
from rlcore.config.workcell import FREE, Workcell
from rlcore.envs.reach import ArmReachEnv
from rlcore.envs.targets import TargetCache
from rlcore.robots.chain import chain_of

ENGINES = ("pybullet", "mujoco")
LABELS = {"pybullet": "PyBullet", "mujoco": "MuJoCo"}
INSTALL_HINT = {
    "pybullet": "pip install pybullet (a wheel exists for Linux x86_64, CPython 3.10-3.11; elsewhere it compiles)",
    "mujoco": "pip install mujoco",
}


@cache
def import_error(engine: str) -> str | None:
    """None if the engine's module imports here, else the first line of why not."""
    try:  # MuJoCo through rlcore's module, which picks the headless renderer first
        importlib.import_module({"mujoco": "rlcore.robots.mujoco_arm"}.get(engine, engine))
    except Exception as err:  # noqa: BLE001 - an import that fails in any way means: not here
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    return None


def resolve(choice: str) -> tuple[str, str]:
    """(engine, why) for `env.physics` = choice; a ConfigError naming the key if it cannot run."""
    if choice == "auto":
        if import_error("pybullet") is None:
            return "pybullet", "env.physics = auto: pybullet imports here"
        if import_error("mujoco") is None:
            why = import_error("pybullet")
            return "mujoco", f"env.physics = auto: pybullet does not import here ({why}), MuJoCo does"
        raise ConfigError("env.physics = auto: neither pybullet nor mujoco imports here; " + INSTALL_HINT["mujoco"])
    if choice not in ENGINES:
        raise ConfigError(f"env.physics = {choice!r}: expected auto, pybullet or mujoco")
    why = import_error(choice)
    if why is not None:
        other = "mujoco" if choice == "pybullet" else "pybullet"
        raise ConfigError(
            f"env.physics = {choice}: {choice} does not import here ({why}); "
            f"{INSTALL_HINT[choice]}, or use env.physics={other}"
        )
    return choice, f"env.physics = {choice}"


def engine_of(params: Any) -> str:
    """The engine `params.env.physics` resolves to here."""
    return resolve(params.env.physics)[0]


def make_arm(robot: RobotConfig, physics: str, self_collision: bool = False, cell: Workcell = FREE) -> Any:
    """The `robot` in the engine `physics` (env.physics) resolves to here (BulletArm or MujocoArm),
    for FK and collision checks, with the obstacles of `cell`."""
    if resolve(physics)[0] == "mujoco":
        from rlcore.robots.mujoco_arm import MujocoArm

        return MujocoArm(chain_of(robot), self_collision=self_collision, cell=cell)
    from rlcore.robots.arm import BulletArm

    arm = BulletArm(chain_of(robot), self_collision=self_collision)
    arm.add_obstacles(cell)
    return arm


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
    env_class = reach_env_class(params)
    return env_class(params.env, params.robot, targets, mode=mode, render_mode=render_mode, gui=gui)
