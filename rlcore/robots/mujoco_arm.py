"""A robot loaded into MuJoCo from its URDF: joint mapping, state access, collision checks,
and the joint servos the reach env drives.

The URDF is read as it is (MuJoCo's own URDF parser) with fixed links kept as bodies
(`fusestatic` off), so every URDF link, the end effector included, is a body of the same name.
Mesh paths are resolved as ROS does (rlcore.robots.meshes: `package://`, ROS_PACKAGE_PATH), COLLADA
meshes converted to STL (MuJoCo reads none), joints off the chain (a gripper's fingers) welded at
their held positions, and a site marks the end-effector frame.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def headless_gl_default() -> None:
    """MuJoCo renders through EGL on a Linux machine without a display (a server, CI) unless
    MUJOCO_GL says otherwise; it must be set before the first `import mujoco`."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


headless_gl_default()
import mujoco  # noqa: E402

from rlcore.config.workcell import FREE, Workcell  # noqa: E402
from rlcore.robots.chain import Chain, default_home, limit_arrays, read_chain  # noqa: E402
from rlcore.robots.meshes import engine_copy  # noqa: E402

UNREADABLE_MESHES = (".dae",)  # mesh formats MuJoCo cannot read: converted to STL

EE_SITE = "rlcore_ee"
OBSTACLE = "rlcore_obstacle_"  # the workcell's geoms: rlcore_obstacle_0, _1, ...
GREY = (0.55, 0.57, 0.6, 1.0)
TARGET_BODY = "rlcore_target"
# The servo's gain as a multiple of the arm's inertia over a substep: with MuJoCo's implicit
# integration a joint's velocity covers 1 - 1/(1 + SERVO_STIFFNESS) of the gap to the commanded
# velocity per substep (99% here).
SERVO_STIFFNESS = 100.0
# Rotor inertia (kg m^2) on every servoed joint. Without it the wrist's inertia is so small that the
# servo's force, before MuJoCo's implicit step divides it out, reads as a diverging acceleration
# (mjWARN_BADQACC) and resets the simulation; at this size it changes no trajectory measurably.
SERVO_ARMATURE = 0.01
# PyBullet's self-collision check reports link pairs up to about 3 mm apart (its shapes' margins)
# as contacts; the MuJoCo check counts pairs within the same clearance, so both reject alike.
SELF_COLLISION_MARGIN = 0.0031


def _hold(joint: mujoco.MjsJoint, value: float) -> None:
    """Weld a held joint at `value` (rad or m): its body turned or moved by it, the joint removed."""
    if not value:  # the URDF's own zero: the weld alone holds it
        return
    body = joint.parent
    axis = np.array(joint.axis, dtype=np.float64)
    if joint.type == mujoco.mjtJoint.mjJNT_HINGE:
        turn = np.zeros(4)
        mujoco.mju_axisAngle2Quat(turn, axis, value)
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, np.array(body.quat, dtype=np.float64), turn)
        body.quat = quat
    elif joint.type == mujoco.mjtJoint.mjJNT_SLIDE:
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, np.array(body.quat, dtype=np.float64))
        body.pos = np.array(body.pos) + rot.reshape(3, 3) @ (axis * value)


def arm_spec(chain: Chain, scenery: bool = False, target_radius: float = 0.025) -> mujoco.MjSpec:
    """The MjSpec of a chain's URDF: links as bodies, off-chain joints welded, the end-effector
    site; with `scenery`, a visual-only floor, light and target sphere (a mocap body)."""
    path = engine_copy(chain.urdf_path, convert={ext: ".stl" for ext in UNREADABLE_MESHES})
    spec = mujoco.MjSpec.from_string(path.read_text(encoding="utf-8"))
    spec.compiler.fusestatic = False
    spec.strippath = False
    spec.compiler.balanceinertia = True  # xarm's URDF has inertias MuJoCo rejects (PyBullet takes them)
    on_chain = {j.name for j in chain.movable}
    for equality in list(spec.equalities):  # a URDF's <mimic> joints (fingers), welded below
        if not {equality.name1, equality.name2} <= on_chain:
            spec.delete(equality)
    held = dict(zip((j.name for j in chain.held), chain.held_positions))
    for joint in list(spec.joints):
        if joint.name not in on_chain:
            _hold(joint, held.get(joint.name, 0.0))
            spec.delete(joint)
    spec.body(chain.ee_link).add_site(name=EE_SITE, size=[0.005, 0, 0])
    if scenery:  # drawn geoms (contype = conaffinity = 0): kept, the URDF's visuals too
        spec.compiler.discardvisual = False
        spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
        spec.visual.headlight.diffuse = [0.6, 0.6, 0.6]
        world = spec.worldbody
        world.add_light(pos=[0.5, -0.5, 2.0], dir=[-0.2, 0.2, -1.0], diffuse=[0.8, 0.8, 0.8])
        world.add_geom(
            type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1.2, 1.2, 0.01], pos=[0, 0, -0.001],
            rgba=[0.85, 0.85, 0.88, 1], contype=0, conaffinity=0,
        )  # fmt: skip
        target = world.add_body(name=TARGET_BODY, mocap=True)
        target.add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[target_radius, 0, 0], rgba=[0.9, 0.1, 0.1, 0.9],
            contype=0, conaffinity=0,
        )  # fmt: skip
    return spec


def add_obstacles(spec: mujoco.MjSpec, cell: Workcell, self_collision: bool) -> None:
    """The workcell's obstacles as static world geoms that touch the arm's geoms and nothing else
    (the arm's own pairs stay off unless `self_collision`), drawn grey."""
    if not self_collision:
        for geom in spec.geoms:
            geom.conaffinity = 0
    for i, obstacle in enumerate(cell.obstacles):
        geom = spec.worldbody.add_geom(name=f"{OBSTACLE}{i}", pos=list(obstacle.position), rgba=list(GREY))
        geom.contype, geom.conaffinity = 0, 1
        if obstacle.shape == "box":
            geom.type, geom.size = mujoco.mjtGeom.mjGEOM_BOX, [s / 2 for s in obstacle.size]
        elif obstacle.shape == "sphere":
            geom.type, geom.size = mujoco.mjtGeom.mjGEOM_SPHERE, [obstacle.radius, 0, 0]
        else:
            geom.type, geom.size = mujoco.mjtGeom.mjGEOM_CAPSULE, [obstacle.radius, obstacle.length / 2, 0]
            geom.quat = {"x": [0.7071068, 0, 0.7071068, 0], "y": [0.7071068, -0.7071068, 0, 0], "z": [1, 0, 0, 0]}[
                obstacle.axis
            ]


def _full_inertia(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """The dense joint-space inertia matrix (mj_fullM's signature changed in MuJoCo 4)."""
    full = np.zeros((model.nv, model.nv))
    if hasattr(data, "qM"):  # MuJoCo 3.x
        mujoco.mj_fullM(model, full, data.qM)
    else:
        mujoco.mj_fullM(model, data, full)
    return full


class MujocoArm:
    """One MjModel/MjData pair holding one fixed-base arm, with BulletArm's interface.

    `actuated` adds one velocity actuator per chain joint (see `servo_gains`), driven at the
    velocity of PyBullet's position-motor law. Contacts are off unless `self_collision`.
    """

    def __init__(
        self,
        chain: Chain | str,
        ee_link: str | None = None,
        self_collision: bool = False,
        actuated: bool = False,
        scenery: bool = False,
        target_radius: float = 0.025,
        cell: Workcell = FREE,
    ) -> None:
        self.chain = read_chain(chain, ee_link) if isinstance(chain, str) else chain
        movable = self.chain.movable
        self.lower, self.upper, self.vmax, self.effort = limit_arrays(self.chain)
        spec = arm_spec(self.chain, scenery, target_radius)
        if actuated:
            for joint in spec.joints:  # the URDF effort as a clamp breaks the implicit servo (see servo_gains)
                joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_FALSE
                joint.armature = SERVO_ARMATURE
            for j in movable:
                act = spec.add_actuator(name=f"servo_{j.name}", target=j.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
                act.set_to_velocity(kv=1.0)  # the gain is set by servo_gains
        self.touching_at_rest: list[tuple[str, str]] = []
        if self_collision:
            for body in spec.bodies:  # as PyBullet's URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, the base too
                if body.parent is not None and body.parent.name != "world":
                    spec.add_exclude(bodyname1=body.parent.name, bodyname2=body.name)
            for geom in spec.geoms:  # a pair's margin is the sum of its geoms'
                geom.margin = SELF_COLLISION_MARGIN / 2
            self.touching_at_rest = self._contacts_at_rest(spec)
            for a, b in self.touching_at_rest:
                spec.add_exclude(bodyname1=a, bodyname2=b)
        if cell:
            add_obstacles(spec, cell, self_collision)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        if not (self_collision or cell):
            self.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
        self.obstacle_geoms = {self.model.geom(f"{OBSTACLE}{i}").id for i in range(len(cell.obstacles))}
        self.qpos_ids = np.array([self.model.jnt_qposadr[self.model.joint(j.name).id] for j in movable])
        self.dof_ids = np.array([self.model.jnt_dofadr[self.model.joint(j.name).id] for j in movable])
        self.ee_site = self.model.site(EE_SITE).id
        self.link_ids = [self.model.body(link).id for link in self.chain.links]
        self.target_mocap = self.model.body(TARGET_BODY).mocapid[0] if scenery else -1

    def _contacts_at_rest(self, spec: mujoco.MjSpec) -> list[tuple[str, str]]:
        """Body pairs in contact at the rest pose (rlcore.robots.chain.default_home): like BulletArm's,
        left out of the self-collision check (a gripper's fingers). The FANUC has none."""
        model = spec.compile()
        data = mujoco.MjData(model)
        q = default_home(self.chain)
        for j, value in zip(self.chain.movable, q):
            data.qpos[model.jnt_qposadr[model.joint(j.name).id]] = value
        mujoco.mj_fwdPosition(model, data)
        pairs = set()
        for c in data.contact[: data.ncon]:
            a, b = (model.body(model.geom_bodyid[g]).name for g in (c.geom1, c.geom2))
            pairs.add(tuple(sorted((a, b))))
        return sorted(pairs)

    def servo_gains(self, dt_sub: float) -> None:
        """Velocity-servo gains and the integrator for substeps of `dt_sub` seconds.

        Each actuator pushes kv (ctrl - qd) with ctrl the velocity PyBullet's position motor asks
        for (`MujocoReachEnv.command`). kv is SERVO_STIFFNESS times the arm's largest inertia (the
        joint-space inertia matrix's top eigenvalue at the rest pose) over a substep, the same for
        every joint: the servos then dominate the coupling between joints (a shoulder's jerk does
        not fling the light wrist), and MuJoCo's implicit integration keeps them stable. The URDF
        efforts do not clamp the servos: MuJoCo's implicit step assumes the damping acts in full,
        and a clamped stiff servo diverges (the bundled FANUC's efforts are our estimates anyway)."""
        mujoco.mj_resetData(self.model, self.data)
        mujoco.mj_forward(self.model, self.data)
        inertia = float(np.linalg.eigvalsh(_full_inertia(self.model, self.data)).max())
        kv = np.full(len(self.dof_ids), SERVO_STIFFNESS * inertia / dt_sub)
        self.model.actuator_gainprm[: len(kv), 0] = kv
        self.model.actuator_biasprm[: len(kv), 2] = -kv
        self.model.opt.timestep = dt_sub
        self.model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        mujoco.mj_resetData(self.model, self.data)

    def set_joints(self, q: np.ndarray, qd: np.ndarray | None = None) -> None:
        """Teleport the joints (no physics step); kinematics are updated."""
        self.data.qpos[self.qpos_ids] = q
        self.data.qvel[self.dof_ids] = 0.0 if qd is None else qd
        mujoco.mj_kinematics(self.model, self.data)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self.qpos_ids].copy(), self.data.qvel[self.dof_ids].copy()

    def ee_position(self, fk: bool = False) -> np.ndarray:
        """World position of the end-effector link frame (`fk` recomputes the kinematics)."""
        if fk:
            mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.ee_site].copy()

    def link_positions(self) -> np.ndarray:
        """World positions (L, 3) of the chain links' frames, after set_joints."""
        return self.data.xpos[self.link_ids].copy()

    def _contacts(self, recompute: bool = True) -> list[tuple[int, int, float]]:
        """(geom, geom, distance) of the current contacts (`recompute`: at the joints as they are)."""
        if recompute:
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_collision(self.model, self.data)
        return [(c.geom1, c.geom2, c.dist) for c in self.data.contact[: self.data.ncon]]

    def in_self_collision(self) -> bool:
        """True if non-adjacent links touch (needs self_collision=True at load)."""
        obstacles = self.obstacle_geoms
        return any(a not in obstacles and b not in obstacles for a, b, _ in self._contacts())

    def obstacle_distance(self, within: float = 0.1) -> float:
        """The smallest signed distance (m) between the arm and an obstacle at the current
        joints (`within`: where it stops looking; inf beyond)."""
        self.model.geom_margin[list(self.obstacle_geoms)] = within
        try:
            found = [d for a, b, d in self._contacts() if (a in self.obstacle_geoms) != (b in self.obstacle_geoms)]
        finally:
            self.model.geom_margin[list(self.obstacle_geoms)] = 0.0
        return min([d for d in found if d <= within], default=float("inf"))

    def touches_obstacle(self, recompute: bool = True) -> bool:
        """True if the arm touches (or is inside) an obstacle; after a physics step the contacts
        are already there (`recompute` False)."""
        obstacles = self.obstacle_geoms
        return any((a in obstacles) != (b in obstacles) and d < 0 for a, b, d in self._contacts(recompute))

    def close(self) -> None:
        """Nothing to release: MjModel/MjData free themselves."""
