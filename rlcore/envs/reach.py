"""The reach task as a gymnasium env, whatever engine steps the physics (PyBullet or MuJoCo).

Observation (float32, length 3 * dof + 12; dof = 6 for the FANUC):
    [0:dof]         joint positions scaled to [-1, 1] by the URDF limits
    [dof:2dof]      joint velocities divided by the URDF velocity limits
    [2dof:2dof+3]   flange position (m, base frame)
    [+3:+6]         target position (m)
    [+6:+9]         target - flange (m)
    [+9:+12]        fine offset: (target - flange) / max(|target - flange|, env.offset_scale), linear
                    within offset_scale of the target, so millimetres stay visible after normalisation
    [+12:+12+dof]   previous action (what the action-rate penalty compares against)
Action: one value in [-1, 1] per joint = a joint-velocity command as a fraction of the URDF
velocity limit, sign(a) |a|^env.action_power (power 1: the action itself). It moves a commanded
joint position (clipped to the limits) that the engine's
position control tracks with the velocity limit enforced.
Reward: -w_d d + w_p (1 - tanh(d / sigma)) + w_f (1 - tanh(d / sigma_f)) - w_a |a - a_prev|^2 / dof,
d = |target - flange|.
Episodes last `env.episode_steps` steps and never end on success (the arm must hold the target);
`info["is_success"]` is d < `env.success_radius`, and counts at the last step. In a workcell
(`env.workcell`), touching an obstacle ends the episode (terminated) as a failure, with
`env.reward.collision` taken off that step's reward and `info["collision"]` True.

An engine's env subclasses `ArmReachEnv` and supplies `_load_arm` (the robot in the engine, with
set_joints, ee_position, chain and limits, and the engine's physics settings), `command`,
`_read_state`, `_place_target` and `render`.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from rlcore.config.schema import EnvConfig, RobotConfig
from rlcore.config.workcell import cell_of
from rlcore.envs.targets import Curriculum, TargetCache
from rlcore.envs.task import clearance_penalty, fine_offset, obs_size, reach_reward, substep_gain, velocity_fraction
from rlcore.robots.chain import home_pose


class ArmReachEnv(gym.Env):
    """Move the flange to a target point and hold it there (engine-independent part)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    engine = ""

    def __init__(
        self,
        env: EnvConfig | None = None,
        robot: RobotConfig | None = None,
        targets: TargetCache | None = None,
        mode: str = "train",
        render_mode: str | None = None,
        gui: bool = False,
    ) -> None:
        """The task of the `env` section on the `robot` section's arm (both default to the schema's)."""
        super().__init__()
        self.cfg = env or EnvConfig()
        self.robot = robot or RobotConfig()
        self.targets = targets
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.cfg.control_hz}
        self.physics = self.cfg.train_physics if mode == "train" else self.cfg.eval_physics
        self.dt = 1.0 / self.cfg.control_hz
        self.substeps = self.physics.sim_hz // self.cfg.control_hz
        self.gain = substep_gain(self.cfg.tracking, self.substeps)
        self.cell = cell_of(self.cfg)  # obstacles (rlcore.config.workcell): touching one ends the episode
        self.arm = arm = self._load_arm(gui)
        dof = arm.chain.dof
        self.dof = dof
        self.home = home_pose(self.robot, arm.chain)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(dof,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(obs_size(dof),), dtype=np.float32)
        self.split = "train" if mode == "train" else "heldout"
        self.curriculum = Curriculum.from_config(self.cfg.curriculum, targets.n_levels if targets else 1)
        mid, half = (arm.upper + arm.lower) / 2, (arm.upper - arm.lower) / 2
        self._vmax_dt = arm.vmax * self.dt
        self._state_offset = np.stack([mid, np.zeros(dof)])
        self._state_scale = 1.0 / np.stack([half, arm.vmax])
        self._obs = np.zeros(obs_size(dof), dtype=np.float32)
        self.q_cmd = self.home.copy()
        self.prev_action = np.zeros(dof, dtype=np.float32)
        self.target = np.zeros(3)
        self.steps = 0
        self.forced_target: np.ndarray | None = None  # evaluation: the next reset uses this target

    # -- engine hooks --------------------------------------------------------------------------
    def _load_arm(self, gui: bool) -> Any:
        """The robot loaded into the engine (a live window with `gui`), with the engine set to
        `self.physics`, `self.dt`, `self.substeps` and `self.gain`."""
        raise NotImplementedError

    def command(self, q_cmd: np.ndarray) -> None:
        """Track a joint-position command for one control step, as `step` does with the command
        its action gives (a controller's q_cmd drives the arm through here)."""
        raise NotImplementedError

    def _read_state(self) -> tuple[np.ndarray, Any]:
        """(2, dof) joint positions and velocities, and the flange position."""
        raise NotImplementedError

    def _place_target(self) -> None:
        """Move the drawn target (if any) to self.target."""

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        q = np.clip(
            self.home + self.np_random.uniform(-self.cfg.reset_noise, self.cfg.reset_noise, self.dof),
            self.arm.lower,
            self.arm.upper,
        )
        self.target = self._next_target(options)
        self.arm.set_joints(q)
        self.q_cmd = q.copy()
        self.prev_action = np.zeros(self.dof, dtype=np.float32)
        self.steps = 0
        self._place_target()
        obs, distance = self._observe()
        return obs, {"distance": distance, "is_success": distance < self.cfg.success_radius}

    def step(self, action: np.ndarray):
        a = np.minimum(np.maximum(np.asarray(action, dtype=np.float32), -1.0), 1.0)
        arm = self.arm
        fraction = velocity_fraction(a, self.cfg.action_power)
        self.command(np.minimum(np.maximum(self.q_cmd + fraction * self._vmax_dt, arm.lower), arm.upper))
        diff = a - self.prev_action
        delta_sq = float(diff @ diff)
        self.prev_action = a
        obs, distance = self._observe()
        reward = reach_reward(distance, delta_sq, self.cfg, self.dof)
        self.steps += 1
        truncated = self.steps >= self.cfg.episode_steps
        collided = False
        if self.cell:
            shaped = self.cfg.reward.clearance > 0
            clearance = self.arm.obstacle_distance(self.cfg.reward.clearance_distance) if shaped else None
            collided = clearance < 0 if shaped else self.arm.touches_obstacle()
            reward -= self.cfg.reward.collision * collided + (clearance_penalty(clearance, self.cfg) if shaped else 0.0)
        info = {"distance": distance, "is_success": not collided and distance < self.cfg.success_radius}
        if self.cell:
            info["collision"] = collided
        return obs, reward, collided, truncated, info

    def close(self) -> None:
        self.arm.close()

    # -- curriculum hooks (called through VecEnv.env_method) -----------------------------------
    def set_level(self, level: int) -> None:
        self.curriculum.level = int(level)

    def set_target(self, target: np.ndarray | None) -> None:
        """Fix the target of the following resets (evaluation); None goes back to sampling."""
        self.forced_target = None if target is None else np.asarray(target, dtype=np.float64)

    # -- internals -----------------------------------------------------------------------------
    def _next_target(self, options: dict) -> np.ndarray:
        if "target" in options:
            return np.asarray(options["target"], dtype=np.float64)
        if self.forced_target is not None:
            return self.forced_target
        if self.targets is None:  # no cache: FK of a random configuration (always reachable)
            self.arm.set_joints(self.np_random.uniform(self.arm.lower, self.arm.upper))
            return self.arm.ee_position(fk=True)
        idx = self.targets.sample(1, self.np_random, self.split, self.curriculum.level)
        return self.targets.jittered(idx, self.cfg.target_noise, self.np_random, self._fk)[0].astype(np.float64)

    def _fk(self, q: np.ndarray) -> np.ndarray:
        out = []
        for qi in np.atleast_2d(q):
            self.arm.set_joints(np.clip(qi, self.arm.lower, self.arm.upper))
            out.append(self.arm.ee_position(fk=True))
        return np.array(out)

    def _observe(self) -> tuple[np.ndarray, float]:
        state, ee = self._read_state()
        obs, d = self._obs, self.dof
        # joint positions and velocities in one go: (q - mid) / half, qd / vmax
        obs[: 2 * d] = ((state - self._state_offset) * self._state_scale).ravel()
        obs[2 * d : 2 * d + 3] = ee
        obs[2 * d + 3 : 2 * d + 6] = self.target
        delta = obs[2 * d + 6 : 2 * d + 9]
        np.subtract(obs[2 * d + 3 : 2 * d + 6], obs[2 * d : 2 * d + 3], out=delta)
        distance = math.sqrt(float(delta @ delta))
        obs[2 * d + 9 : 2 * d + 12] = fine_offset(delta, distance, self.cfg.offset_scale)
        obs[2 * d + 12 :] = self.prev_action
        return obs.copy(), distance
