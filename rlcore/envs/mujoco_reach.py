"""The MuJoCo reach environment (gymnasium API): the task of `rlcore.envs.reach` on MuJoCo, with
the same observation layout, action meaning, velocity limits, reward, success test and episode
length as the PyBullet env.

Position control, with the same tracking-gain law as PyBullet's position motor and the twin: each
substep the joint is driven at v = clamp(kp (q_cmd - q) / dt_sub, +-vmax), kp =
`substep_gain(env.tracking, substeps)`. The position loop closes here, each substep, and one stiff
velocity actuator per joint (added through `mujoco.MjSpec`, `MujocoArm.servo_gains`) tracks v.
(A MuJoCo position actuator with the equivalent gains is an explicit spring in position: at
120 Hz it is unstable on the wrist joints' small inertias; the velocity servo is implicit.)
Train and eval physics set the timestep (1 / sim_hz) and the solver's iterations. Resets set the
state (qpos, qvel) without reloading the model. Contacts are off during episodes, as in PyBullet.
"""

from __future__ import annotations

import time

import numpy as np

from rlcore.envs.reach import ArmReachEnv
from rlcore.envs.task import camera_framing
from rlcore.robots.chain import chain_of
from rlcore.robots.mujoco_arm import MujocoArm, mujoco

RENDER_SIZE = (240, 320)  # height, width: as the PyBullet env's frames


class MujocoReachEnv(ArmReachEnv):
    """Move the flange to a target point and hold it there, in MuJoCo."""

    engine = "mujoco"

    def _load_arm(self, gui: bool) -> MujocoArm:
        robot = self.robot
        scenery = self.render_mode == "rgb_array" or gui
        radius = max(self.cfg.success_radius, 0.025)
        arm = MujocoArm(chain_of(robot), actuated=True, scenery=scenery, target_radius=radius, cell=self.cell)
        dt_sub = self.dt / self.substeps
        arm.servo_gains(dt_sub)
        arm.model.opt.iterations = self.physics.solver_iterations
        self.model, self.data = arm.model, arm.data
        self._ids = arm.qpos_ids
        self._dofs = arm.dof_ids
        self._kp = self.gain / dt_sub
        self._renderer: mujoco.Renderer | None = None
        self._viewer = None
        if gui:
            import mujoco.viewer

            self._viewer = mujoco.viewer.launch_passive(self.model, self.data)
        return arm

    def command(self, q_cmd: np.ndarray) -> None:
        self.q_cmd = np.asarray(q_cmd, dtype=np.float64)
        model, data, ids, kp, vmax = self.model, self.data, self._ids, self._kp, self.arm.vmax
        start = time.perf_counter()
        for _ in range(self.substeps):
            data.ctrl[:] = np.minimum(np.maximum(kp * (self.q_cmd - data.qpos[ids]), -vmax), vmax)
            mujoco.mj_step(model, data)
        mujoco.mj_kinematics(model, data)  # link and site positions at the new state
        if self._viewer is not None:  # demo mode: real time
            self._viewer.sync()
            time.sleep(max(0.0, self.dt - (time.perf_counter() - start)))

    def _read_state(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.data
        return np.stack([data.qpos[self._ids], data.qvel[self._dofs]]), data.site_xpos[self.arm.ee_site]

    def _place_target(self) -> None:
        if self.arm.target_mocap >= 0:
            self.data.mocap_pos[self.arm.target_mocap] = self.target
            mujoco.mj_kinematics(self.model, self.data)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, *RENDER_SIZE)
            except Exception as err:  # noqa: BLE001 - any OpenGL failure gets the same advice
                raise RuntimeError(
                    f"MuJoCo cannot render here ({err}): headless Linux needs EGL "
                    "(Debian: apt-get install libegl1 libgl1-mesa-dri) or MUJOCO_GL=osmesa"
                ) from None
        camera = mujoco.MjvCamera()
        lookat, distance = camera_framing(self.arm.chain, self.targets)
        camera.lookat[:] = lookat
        camera.distance, camera.azimuth, camera.elevation = distance, 140.0, -25.0
        mujoco.mj_camlight(self.model, self.data)  # the light's pose: a reset updates only the kinematics
        self._renderer.update_scene(self.data, camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
