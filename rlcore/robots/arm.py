"""A robot loaded into its own PyBullet client: joint mapping, state access, collision checks."""

from __future__ import annotations

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from rlcore.config.workcell import Workcell
from rlcore.robots.chain import Chain, default_home, limit_arrays, read_chain
from rlcore.robots.meshes import engine_copy

GREY = (0.55, 0.57, 0.6, 1.0)  # obstacles as drawn
# PyBullet's capsules lie along z: the turn (quaternion x, y, z, w) that lays one along x or y
CAPSULE_TURN = {"x": (0.0, 0.7071068, 0.0, 0.7071068), "y": (0.7071068, 0.0, 0.0, 0.7071068), "z": (0, 0, 0, 1)}


class BulletArm:
    """One PyBullet client (DIRECT unless `gui`) holding one fixed-base arm."""

    def __init__(
        self,
        chain: Chain | str,
        ee_link: str | None = None,
        self_collision: bool = False,
        gui: bool = False,
    ) -> None:
        self.chain = read_chain(chain, ee_link) if isinstance(chain, str) else chain
        self.client = BulletClient(connection_mode=p.GUI if gui else p.DIRECT)
        flags = p.URDF_ENABLE_CACHED_GRAPHICS_SHAPES
        if self_collision:
            flags |= p.URDF_USE_SELF_COLLISION | p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT
        self.robot = self.client.loadURDF(str(engine_copy(self.chain.urdf_path)), useFixedBase=True, flags=flags)
        index_by_joint, index_by_link = {}, {}
        for i in range(self.client.getNumJoints(self.robot)):
            info = self.client.getJointInfo(self.robot, i)
            index_by_joint[info[1].decode()] = i
            index_by_link[info[12].decode()] = i
        self.joint_ids = [index_by_joint[j.name] for j in self.chain.movable]
        self.link_ids = [index_by_link[link] for link in self.chain.links]
        self.ee_id = index_by_link[self.chain.ee_link]
        self.held_ids = [index_by_joint[j.name] for j in self.chain.held]
        for j, value, joint in zip(self.held_ids, self.chain.held_positions, self.chain.held):
            self.client.setJointMotorControl2(
                self.robot, j, p.POSITION_CONTROL, targetPosition=value, force=max(joint.effort, 1.0)
            )
        self.lower, self.upper, self.vmax, self.effort = limit_arrays(self.chain)
        self.touching_at_rest: list[tuple[int, int]] = []
        self.obstacle_ids: list[int] = []
        if self_collision:
            self._ignore_contacts_at_rest()

    def _ignore_contacts_at_rest(self) -> None:
        """Link pairs that touch at the rest pose (rlcore.robots.chain.default_home) always touch, e.g.
        a gripper's fingers or a wrist flange against its hand: like a MoveIt allowed-collision
        matrix, those pairs are left out of the self-collision check. The FANUC has none."""
        self.set_joints(default_home(self.chain))
        self.client.performCollisionDetection()
        pairs = {tuple(sorted((c[3], c[4]))) for c in self.client.getContactPoints(self.robot, self.robot)}
        for a, b in sorted(pairs):
            self.client.setCollisionFilterPair(self.robot, self.robot, a, b, 0)
        self.touching_at_rest = sorted(pairs)

    def set_joints(self, q: np.ndarray, qd: np.ndarray | None = None) -> None:
        """Teleport the joints (no physics step); the held joints back to their positions, at rest."""
        for k, j in enumerate(self.joint_ids):
            self.client.resetJointState(self.robot, j, float(q[k]), float(qd[k]) if qd is not None else 0.0)
        for j, value in zip(self.held_ids, self.chain.held_positions):
            self.client.resetJointState(self.robot, j, value, 0.0)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self.robot, self.joint_ids)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def ee_position(self, fk: bool = False) -> np.ndarray:
        """World position of the end-effector link frame."""
        state = self.client.getLinkState(self.robot, self.ee_id, computeForwardKinematics=fk)
        return np.array(state[4])

    def link_positions(self) -> np.ndarray:
        """World positions (L, 3) of the chain links' frames, after set_joints."""
        states = self.client.getLinkStates(self.robot, self.link_ids, computeForwardKinematics=True)
        return np.array([s[4] for s in states])

    def in_self_collision(self) -> bool:
        """True if non-adjacent links touch (needs self_collision=True at load)."""
        self.client.performCollisionDetection()
        return len(self.client.getContactPoints(self.robot, self.robot)) > 0

    def add_obstacles(self, cell: Workcell) -> None:
        """The workcell's obstacles as static bodies that collide and are drawn (grey)."""
        c = self.client
        for obstacle in cell.obstacles:
            orientation = CAPSULE_TURN[obstacle.axis] if obstacle.shape == "capsule" else (0, 0, 0, 1)
            if obstacle.shape == "box":
                shape = {"shapeType": p.GEOM_BOX, "halfExtents": [s / 2 for s in obstacle.size]}
            elif obstacle.shape == "sphere":
                shape = {"shapeType": p.GEOM_SPHERE, "radius": obstacle.radius}
            else:
                shape = {"shapeType": p.GEOM_CAPSULE, "radius": obstacle.radius}
            length = {"height": obstacle.length} if obstacle.shape == "capsule" else {}
            collision = c.createCollisionShape(**shape, **length)
            visual = c.createVisualShape(**shape, **({"length": obstacle.length} if length else {}), rgbaColor=GREY)
            body = c.createMultiBody(
                baseMass=0,
                baseCollisionShapeIndex=collision,
                baseVisualShapeIndex=visual,
                basePosition=obstacle.position,
                baseOrientation=orientation,
            )
            self.obstacle_ids.append(body)

    def obstacle_distance(self, within: float = 0.1) -> float:
        """The smallest signed distance (m) between the arm's moving links and an obstacle, at the
        current joints (`within`: where it stops looking; inf beyond)."""
        best = float("inf")
        for body in self.obstacle_ids:
            for point in self.client.getClosestPoints(self.robot, body, within):
                if point[3] != -1:  # the base does not move: an obstacle on it is caught at load
                    best = min(best, point[8])
        return best

    def touches_obstacle(self) -> bool:
        """True if a moving link touches (or is inside) an obstacle."""
        return self.obstacle_distance(0.0) < 0.0

    def close(self) -> None:
        try:
            self.client.disconnect()
        except p.error:
            pass
