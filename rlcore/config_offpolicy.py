"""The `train.sac` and `train.dqn` sections of params.yaml: stable-baselines3's SAC and DQN
(rlcore/offpolicy.py); gamma comes from train.gamma."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rlcore.config_base import Section


class SacConfig(Section):
    """stable-baselines3 SAC (`train.algo: sb3_sac`); gamma comes from train.gamma."""

    n_envs: int = Field(16, ge=1, le=256)  # PyBullet envs, unless train.n_envs is set
    hidden: list[int] = Field(default_factory=lambda: [128, 128])  # actor and both critics
    activation: Literal["elu", "tanh", "relu", "silu"] = "relu"
    learning_rate: float = Field(9e-3, gt=0.0, le=1.0)
    buffer_size: int = Field(1_000_000, ge=1000)
    learning_starts: int = Field(1000, ge=0)  # env steps of random actions before updates
    batch_size: int = Field(256, ge=8)
    tau: float = Field(0.005, gt=0.0, le=1.0)
    train_freq: int = Field(1, ge=1)  # vec-env steps between updates
    gradient_steps: int = Field(2, ge=1)  # updates each time
    ent_coef: str | float = "auto"  # "auto" (learned, as SB3) or a fixed coefficient


class DqnConfig(Section):
    """stable-baselines3 DQN (`train.algo: sb3_dqn`) over a table of joint-velocity commands."""

    # the action table (rlcore/offpolicy.py): single_joint (one joint at +-action_scale, or none:
    # 1 + 2 x joints rows), joint_pairs (also two joints at once), or explicit rows, one value per joint
    actions: Literal["single_joint", "joint_pairs"] | list[list[float]] = "single_joint"
    action_scale: float = Field(0.25, gt=0.0, le=1.0)  # commanded speed, fraction of the URDF limit
    n_envs: int = Field(16, ge=1, le=256)
    hidden: list[int] = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "tanh", "relu", "silu"] = "relu"
    learning_rate: float = Field(1.4e-3, gt=0.0, le=1.0)
    buffer_size: int = Field(1_000_000, ge=1000)
    learning_starts: int = Field(1000, ge=0)
    batch_size: int = Field(256, ge=8)
    tau: float = Field(1.0, gt=0.0, le=1.0)  # 1 = hard target updates
    target_update_interval: int = Field(2000, ge=1)  # env steps
    train_freq: int = Field(1, ge=1)
    gradient_steps: int = Field(2, ge=1)
    exploration_fraction: float = Field(0.45, gt=0.0, le=1.0)  # share of total_steps over which epsilon falls
    exploration_steps: int | None = Field(None, ge=1)  # env steps instead (over total_steps: all of them)
    exploration_initial_eps: float = Field(1.0, ge=0.0, le=1.0)
    exploration_final_eps: float = Field(0.05, ge=0.0, le=1.0)


OFF_POLICY = ("sb3_sac", "sb3_dqn")
SB3_ALGOS = ("sb3", *OFF_POLICY)
