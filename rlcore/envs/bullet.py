"""The PyBullet reach environment (gymnasium API): the task of `rlcore.envs.reach` on PyBullet in
DIRECT mode, one client per env. Position control is PyBullet's position motor, its gain per
substep set so that `env.tracking` of the gap closes per control step, with the URDF velocity
limit enforced (`maxVelocity`; PyBullet itself does not)."""

from __future__ import annotations

import numpy as np
import pybullet as p

from rlcore.envs.reach import ArmReachEnv
from rlcore.envs.task import camera_framing, obs_size, reach_reward, substep_gain
from rlcore.robots.arm import BulletArm
from rlcore.robots.chain import chain_of

__all__ = ["ReachEnv", "obs_size", "reach_reward", "substep_gain"]  # the task's shared parts, re-exported


class ReachEnv(ArmReachEnv):
    """Move the flange to a target point and hold it there, in PyBullet."""

    engine = "pybullet"

    def _load_arm(self, gui: bool) -> BulletArm:
        arm = BulletArm(chain_of(self.robot), gui=gui)
        arm.add_obstacles(self.cell)
        self.client = arm.client
        self.client.setGravity(0, 0, -9.81)
        self.client.setPhysicsEngineParameter(
            fixedTimeStep=self.dt, numSubSteps=self.substeps, numSolverIterations=self.physics.solver_iterations
        )
        # the hot path's PyBullet calls, bound once (BulletClient builds a partial per lookup)
        self._motor = self.client.setJointMotorControl2
        self._motors = list(zip(arm.joint_ids, arm.effort.tolist(), arm.vmax.tolist()))
        self._step_simulation = self.client.stepSimulation
        self._joint_states = self.client.getJointStates
        self._link_state = self.client.getLinkState
        self._target_body: int | None = None
        return arm

    def command(self, q_cmd: np.ndarray) -> None:
        self.q_cmd = np.asarray(q_cmd, dtype=np.float64)
        motor, robot, mode, gain = self._motor, self.arm.robot, p.POSITION_CONTROL, self.gain
        for (j, force, vmax), target in zip(self._motors, self.q_cmd.tolist()):
            motor(robot, j, mode, targetPosition=target, force=force, maxVelocity=vmax, positionGain=gain)
        self._step_simulation()

    def _read_state(self) -> tuple[np.ndarray, tuple]:
        states = self._joint_states(self.arm.robot, self.arm.joint_ids)
        ee = self._link_state(self.arm.robot, self.arm.ee_id, computeForwardKinematics=True)[4]
        return np.array([s[:2] for s in states]).T, ee

    def _place_target(self) -> None:
        if self._target_body is not None:
            self.client.resetBasePositionAndOrientation(self._target_body, self.target, (0, 0, 0, 1))

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._target_body is None:
            self._add_scenery()
        lookat, distance = camera_framing(self.arm.chain, self.targets)
        view = self.client.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=lookat,
            distance=distance,
            yaw=50,
            pitch=-25,
            roll=0,
            upAxisIndex=2,
        )
        proj = self.client.computeProjectionMatrixFOV(fov=55, aspect=4 / 3, nearVal=0.05, farVal=5 * max(1.0, distance))
        _, _, rgba, _, _ = self.client.getCameraImage(320, 240, view, proj, renderer=p.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(240, 320, 4)[:, :, :3]

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
