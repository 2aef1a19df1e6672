"""Forward kinematics and the position Jacobian of a serial chain in numpy (float64), from the chain
as an exported model stores it (`rlcore.chain` metadata): what the torch-free controllers run.

A joint is a dict with name, movable, xyz, rpy, axis, lower, upper, velocity (URDF units);
`chain_joints(chain)` makes that list from a `rlcore.robots.chain.Chain`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def chain_joints(chain: Any) -> list[dict[str, Any]]:
    """The joint dicts of a `rlcore.robots.chain.Chain` (the `rlcore.chain` metadata's "joints")."""
    return [
        {
            "name": j.name,
            "movable": j.movable,
            "xyz": list(j.xyz),
            "rpy": list(j.rpy),
            "axis": list(j.axis),
            "lower": j.lower,
            "upper": j.upper,
            "velocity": j.velocity,
        }
        for j in chain.joints
    ]


def _skew(axis: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])


def _rpy(rpy: list[float]) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw: Rz(yaw) Ry(pitch) Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


class ChainFK:
    """Flange position and position Jacobian of a chain, for one joint vector or a batch."""

    def __init__(self, joints: list[dict[str, Any]]) -> None:
        self.steps = []
        for j in joints:
            axis = np.asarray(j["axis"], dtype=np.float64)
            axis = axis / (np.linalg.norm(axis) or 1.0)
            k = _skew(axis)
            self.steps.append((np.asarray(j["xyz"], dtype=np.float64), _rpy(j["rpy"]), axis, k, k @ k, j["movable"]))
        movable = [j for j in joints if j["movable"]]
        self.dof = len(movable)
        self.lower = np.array([j["lower"] for j in movable], dtype=np.float64)
        self.upper = np.array([j["upper"] for j in movable], dtype=np.float64)
        self.vmax = np.array([j["velocity"] for j in movable], dtype=np.float64)

    def position(self, q: np.ndarray) -> np.ndarray:
        """Flange position (3,) for q (dof,), or (B, 3) for q (B, dof)."""
        return self.position_and_jacobian(q)[0]

    def position_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flange positions and their Jacobians d(position)/dq: (3,), (3, dof) for one q, or
        (B, 3), (B, 3, dof) for a batch. Revolute joints: column i = axis_i x (flange - joint_i)."""
        q = np.asarray(q, dtype=np.float64)
        single = q.ndim == 1
        q = np.atleast_2d(q)
        batch = q.shape[0]
        rot = np.broadcast_to(np.eye(3), (batch, 3, 3))
        pos = np.zeros((batch, 3))
        origins, axes, qi = [], [], 0
        for xyz, origin_rot, axis, k, k2, movable in self.steps:
            pos = pos + rot @ xyz
            rot = rot @ origin_rot
            if movable:
                angle = q[:, qi, None, None]
                origins.append(pos)
                axes.append(rot @ axis)
                rot = rot @ (np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k2)
                qi += 1
        if axes:
            jac = np.cross(np.stack(axes, axis=1), pos[:, None, :] - np.stack(origins, axis=1)).transpose(0, 2, 1)
        else:
            jac = np.zeros((batch, 3, 0))
        return (pos[0], jac[0]) if single else (pos, jac)
