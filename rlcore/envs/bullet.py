"""The PyBullet reach environment (gymnasium API): the reference for training and evaluation.

Observation (float32, length 3 * dof + 9; dof = 6 for the FANUC):
    [0:dof]         joint positions scaled to [-1, 1] by the URDF limits
    [dof:2dof]      joint velocities divided by the URDF velocity limits
    [2dof:2dof+3]   flange position (m, base frame)
    [+3:+6]         target position (m)
    [+6:+9]         target - flange (m)
    [+9:+9+dof]     previous action (what the action-rate penalty compares against)
Action: one value in [-1, 1] per joint = a joint-velocity command as a fraction of the URDF
velocity limit. It moves a commanded joint position (clipped to the limits) that PyBullet's
position control tracks with the velocity limit enforced (`maxVelocity`).
Reward: -w_d d + w_p (1 - tanh(d / sigma)) - w_a |a - a_prev|^2 / dof, d = |target - flange|.
Episodes last `env.episode_steps` steps and never end on success (the arm must hold the target);
`info["is_success"]` is d < `env.success_radius`, and counts at the last step.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pybullet as p

from rlcore.config import Params
from rlcore.envs.task import obs_size, reach_reward, substep_gain
from rlcore.robots.arm import BulletArm
from rlcore.targets import Curriculum, TargetCache

__all__ = ["ReachEnv", "obs_size", "reach_reward", "substep_gain"]  # the task's shared parts, re-exported


class ReachEnv(gym.Env):
    """Move the flange to a target point and hold it there."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        params: Params | None = None,
        targets: TargetCache | None = None,
        mode: str = "train",
        render_mode: str | None = None,
        gui: bool = False,
    ) -> None:
        super().__init__()
        self.params = params or Params()
        self.cfg = self.params.env
        self.targets = targets
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.cfg.control_hz}
        physics = self.cfg.train_physics if mode == "train" else self.cfg.eval_physics
        self.arm = BulletArm(self.params.robot.urdf, self.params.robot.ee_link, gui=gui)
        self.client = self.arm.client
        self.dt = 1.0 / self.cfg.control_hz
        self.client.setGravity(0, 0, -9.81)
        substeps = physics.sim_hz // self.cfg.control_hz
        self.client.setPhysicsEngineParameter(
            fixedTimeStep=self.dt, numSubSteps=substeps, numSolverIterations=physics.solver_iterations
        )
        self.gain = substep_gain(self.cfg.tracking, substeps)
        dof = self.arm.chain.dof
        self.dof = dof
        self.home = np.array(self.params.robot.home or [0.0] * dof, dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(dof,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(obs_size(dof),), dtype=np.float32)
        self.split = "train" if mode == "train" else "heldout"
        self.curriculum = Curriculum.from_config(self.cfg.curriculum, targets.n_levels if targets else 1)
        self._mid = (self.arm.upper + self.arm.lower) / 2
        self._half = (self.arm.upper - self.arm.lower) / 2
        self._vmax_dt = self.arm.vmax * self.dt
        self._state_offset = np.stack([self._mid, np.zeros(dof)])
        self._state_scale = 1.0 / np.stack([self._half, self.arm.vmax])
        # the hot path's PyBullet calls, bound once (BulletClient builds a partial per lookup)
        self._motor = self.client.setJointMotorControl2
        self._motors = list(zip(self.arm.joint_ids, self.arm.effort.tolist(), self.arm.vmax.tolist()))
        self._step_simulation = self.client.stepSimulation
        self._joint_states = self.client.getJointStates
        self._link_state = self.client.getLinkState
        self._obs = np.zeros(obs_size(dof), dtype=np.float32)
        self.q_cmd = self.home.copy()
        self.prev_action = np.zeros(dof, dtype=np.float32)
        self.target = np.zeros(3)
        self.steps = 0
        self._target_body: int | None = None
        self.forced_target: np.ndarray | None = None  # evaluation: the next reset uses this target

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
        if self._target_body is not None:
            self.client.resetBasePositionAndOrientation(self._target_body, self.target, (0, 0, 0, 1))
        obs, distance = self._observe()
        return obs, {"distance": distance, "is_success": distance < self.cfg.success_radius}

    def step(self, action: np.ndarray):
        a = np.minimum(np.maximum(np.asarray(action, dtype=np.float32), -1.0), 1.0)
        arm = self.arm
        self.command(np.minimum(np.maximum(self.q_cmd + a * self._vmax_dt, arm.lower), arm.upper))
        diff = a - self.prev_action
        delta_sq = float(diff @ diff)
        self.prev_action = a
        obs, distance = self._observe()
        reward = reach_reward(distance, delta_sq, self.cfg, self.dof)
        self.steps += 1
        truncated = self.steps >= self.cfg.episode_steps
        info = {"distance": distance, "is_success": distance < self.cfg.success_radius}
        return obs, reward, False, truncated, info

    def command(self, q_cmd: np.ndarray) -> None:
        """Track a joint-position command for one control step, as `step` does with the command
        its action gives (a controller's q_cmd drives the arm through here)."""
        self.q_cmd = np.asarray(q_cmd, dtype=np.float64)
        motor, robot, mode, gain = self._motor, self.arm.robot, p.POSITION_CONTROL, self.gain
        for (j, force, vmax), target in zip(self._motors, self.q_cmd.tolist()):
            motor(robot, j, mode, targetPosition=target, force=force, maxVelocity=vmax, positionGain=gain)
        self._step_simulation()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._target_body is None:
            self._add_scenery()
        view = self.client.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=(0.25, 0.0, 0.4),
            distance=1.25,
            yaw=50,
            pitch=-25,
            roll=0,
            upAxisIndex=2,
        )
        proj = self.client.computeProjectionMatrixFOV(fov=55, aspect=4 / 3, nearVal=0.05, farVal=5)
        _, _, rgba, _, _ = self.client.getCameraImage(320, 240, view, proj, renderer=p.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(240, 320, 4)[:, :, :3]

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
        states = self._joint_states(self.arm.robot, self.arm.joint_ids)
        ee = self._link_state(self.arm.robot, self.arm.ee_id, computeForwardKinematics=True)[4]
        obs, d = self._obs, self.dof
        # joint positions and velocities in one go: (q - mid) / half, qd / vmax
        obs[: 2 * d] = ((np.array([s[:2] for s in states]).T - self._state_offset) * self._state_scale).ravel()
        obs[2 * d : 2 * d + 3] = ee
        obs[2 * d + 3 : 2 * d + 6] = self.target
        delta = obs[2 * d + 6 : 2 * d + 9]
        np.subtract(obs[2 * d + 3 : 2 * d + 6], obs[2 * d : 2 * d + 3], out=delta)
        obs[2 * d + 9 :] = self.prev_action
        return obs.copy(), math.sqrt(float(delta @ delta))

    def _add_scenery(self) -> None:
        """Visual-only floor and target sphere (no collision, no cost to the physics)."""
        floor = self.client.createVisualShape(
            p.GEOM_BOX, halfExtents=(1.2, 1.2, 0.001), rgbaColor=(0.85, 0.85, 0.88, 1)
        )
        self.client.createMultiBody(baseMass=0, baseVisualShapeIndex=floor, basePosition=(0, 0, -0.001))
        sphere = self.client.createVisualShape(
            p.GEOM_SPHERE, radius=max(self.cfg.success_radius, 0.025), rgbaColor=(0.9, 0.1, 0.1, 0.9)
        )
        self._target_body = self.client.createMultiBody(
            baseMass=0, baseVisualShapeIndex=sphere, basePosition=self.target.tolist()
        )
