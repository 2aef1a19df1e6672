"""Batched forward kinematics in torch for a serial chain read from a URDF.

Uses only matmul, sin/cos, mul/add and indexing, so it runs natively on CPU, CUDA, ROCm, MPS and
DirectML. Everything is float32 unless a dtype is given (float64 is for CPU-side checks only).
"""

from __future__ import annotations

import math

import torch

from rlcore.robots.chain import Chain


def rpy_matrix(rpy: tuple[float, float, float]) -> list[list[float]]:
    """URDF fixed-axis roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]


class ForwardKinematics:
    """Positions (and orientations) of every link of a chain for a batch of joint vectors."""

    def __init__(self, chain: Chain, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.chain = chain
        self.device = torch.device(device)
        self.dtype = dtype
        kw = {"device": self.device, "dtype": dtype}
        self.origin_rot = torch.tensor([rpy_matrix(j.rpy) for j in chain.joints], **kw)
        self.origin_pos = torch.tensor([j.xyz for j in chain.joints], **kw)
        axes = []
        for j in chain.joints:
            norm = math.sqrt(sum(a * a for a in j.axis)) or 1.0
            axes.append([a / norm for a in j.axis])
        self.axis = torch.tensor(axes, **kw)
        # Skew matrices K of each axis, for Rodrigues: R = I + sin(q) K + (1 - cos(q)) K @ K.
        k = torch.zeros(len(axes), 3, 3, **kw)
        ax = self.axis
        k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -ax[:, 2], ax[:, 1], -ax[:, 0]
        k[:, 1, 0], k[:, 2, 0], k[:, 2, 1] = ax[:, 2], -ax[:, 1], ax[:, 0]
        self.skew = k
        self.skew2 = k @ k
        self.eye = torch.eye(3, **kw)
        movable = [i for i, j in enumerate(chain.joints) if j.movable]
        self.skew_movable, self.skew2_movable = self.skew[movable], self.skew2[movable]
        self.origin_rot_movable = self.origin_rot[movable]

    def _joint_turns(self, q: torch.Tensor) -> torch.Tensor:
        """(B, dof, 3, 3): each movable joint's origin rotation times its rotation by q, all joints
        at once (Rodrigues: R = I + sin(q) K + (1 - cos(q)) K @ K)."""
        angle = q.unsqueeze(-1).unsqueeze(-1)
        turn = self.eye + torch.sin(angle) * self.skew_movable + (1.0 - torch.cos(angle)) * self.skew2_movable
        return self.origin_rot_movable @ turn

    def link_poses(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World positions (B, L, 3) and rotations (B, L, 3, 3) of each chain link (root excluded)."""
        batch = q.shape[0]
        turns = self._joint_turns(q)
        rot = self.eye.expand(batch, 3, 3)
        pos = torch.zeros(batch, 3, device=self.device, dtype=self.dtype)
        positions, rotations = [], []
        qi = 0
        for i, joint in enumerate(self.chain.joints):
            pos = pos + torch.matmul(rot, self.origin_pos[i])
            if joint.movable:
                rot = rot @ turns[:, qi]
                qi += 1
            else:
                rot = rot @ self.origin_rot[i]
            positions.append(pos)
            rotations.append(rot)
        return torch.stack(positions, dim=1), torch.stack(rotations, dim=1)

    def ee_position(self, q: torch.Tensor) -> torch.Tensor:
        """Position (B, 3) of the end-effector link (the hot path of the batched env). Joint by
        joint, as it always was: its rounding is what every trained policy and test saw."""
        batch = q.shape[0]
        rot = None
        pos = torch.zeros(batch, 3, device=self.device, dtype=self.dtype)
        qi = 0
        for i, joint in enumerate(self.chain.joints):
            if rot is None:  # root frame: identity rotation
                pos = pos + self.origin_pos[i]
                rot = self.origin_rot[i].expand(batch, 3, 3)
            else:
                pos = pos + (rot @ self.origin_pos[i].unsqueeze(-1)).squeeze(-1)
                rot = rot @ self.origin_rot[i]
            if joint.movable:
                angle = q[:, qi].reshape(batch, 1, 1)
                qi += 1
                rot = rot @ (self.eye + torch.sin(angle) * self.skew[i] + (1.0 - torch.cos(angle)) * self.skew2[i])
        return pos
