"""The classical reference: a damped-least-squares (resolved-rate) reaching controller, numpy only.

    reference = DlsController.from_model("models/policy.onnx")   # the chain the policy was exported with
    reference.reset(q)                                             # measured joints at the start of a motion
    q_cmd = reference.step(q, qd, target)                          # every control step (1 / control_hz s)

It speaks the policy's action interface: each step it picks a joint-velocity command as a fraction
of each joint's velocity limit (`act`), and integrates it into a joint-position command clipped to
the URDF limits, q_cmd += fraction * velocity_limit / control_hz, as the training env and
`rlcore.policy.controller.Controller` do. The command is the damped-least-squares step from the
commanded configuration towards the target,

    dq = J^T (J J^T + damping^2 I)^-1 (target - fk(q_cmd)),

scaled down as a whole where a joint would exceed its velocity limit (so the flange moves along
the same direction). Errors are measured at the command, which the arm's position control tracks,
so the command converges like Newton's method and the arm follows it. Every method takes one joint
vector (dof,) or a batch (B, dof).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlcore.policy.chain_fk import ChainFK, chain_joints

DEFAULT_DAMPING = 0.02  # m: damping of the least-squares step near singular configurations


class DlsController:
    """Damped-least-squares resolved-rate control of a chain's flange position."""

    name = "dls"

    def __init__(
        self,
        joints: list[dict[str, Any]],
        control_hz: float,
        damping: float = DEFAULT_DAMPING,
        action_power: float = 1.0,
    ) -> None:
        """The chain as joint dicts (`rlcore.policy.chain_fk`), the control rate, the damping (m),
        and the env's action_power (the velocity fraction is sign(a) |a|^power)."""
        if damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.fk = ChainFK(joints)
        self.dof = self.fk.dof
        self.lower, self.upper, self.vmax = self.fk.lower, self.fk.upper, self.fk.vmax
        self.dt = 1.0 / float(control_hz)
        self.damping = float(damping)
        self.power = float(action_power)
        self.q_cmd = np.zeros(self.dof)
        self.last_action = np.zeros(self.dof, dtype=np.float32)

    @classmethod
    def from_chain(
        cls, chain: Any, control_hz: float, damping: float = DEFAULT_DAMPING, action_power: float = 1.0
    ) -> DlsController:
        """For a `rlcore.robots.chain.Chain` (the env's own)."""
        return cls(chain_joints(chain), control_hz, damping, action_power)

    @classmethod
    def from_model(cls, model_path: str | Path, damping: float = DEFAULT_DAMPING) -> DlsController:
        """For the chain and control rate stored in an rlcore ONNX export."""
        import onnxruntime as ort

        meta = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).get_modelmeta()
        data = meta.custom_metadata_map
        if data.get("rlcore.format") != "1":
            raise ValueError(f"{model_path} is not an rlcore policy export (no rlcore.format metadata)")
        joints = json.loads(data["rlcore.chain"])["joints"]
        return cls(joints, float(data["rlcore.control_hz"]), damping, float(data.get("rlcore.action_power", "1.0")))

    def reset(self, q: np.ndarray) -> None:
        """Start a motion from the measured joint positions: command = where the arm is."""
        self.q_cmd = np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)
        self.last_action = np.zeros(self.q_cmd.shape, dtype=np.float32)

    def act(self, target: np.ndarray) -> np.ndarray:
        """The next action (float32, in [-1, 1], a fraction of each velocity limit) towards `target`
        (m, base frame), and the command advanced by it, as the env advances its own."""
        pos, jac = self.fk.position_and_jacobian(self.q_cmd)
        error = np.asarray(target, dtype=np.float64) - pos
        jjt = jac @ np.swapaxes(jac, -1, -2) + self.damping**2 * np.eye(3)
        dq = (np.swapaxes(jac, -1, -2) @ np.linalg.solve(jjt, error[..., None]))[..., 0]
        fraction = dq / (self.vmax * self.dt)
        fraction = fraction / np.maximum(1.0, np.abs(fraction).max(axis=-1, keepdims=True))
        action = (np.sign(fraction) * np.abs(fraction) ** (1.0 / self.power)).astype(np.float32)
        # the command advances as the env advances its own, from the float32 action it receives
        applied = action if self.power == 1.0 else action * np.abs(action) ** (self.power - 1.0)
        self.q_cmd = np.clip(self.q_cmd + applied * (self.vmax * self.dt), self.lower, self.upper)
        self.last_action = action
        return action

    def step(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
        """One control step, the `Controller` API: measured joints (unused: the command is
        integrated, as the policy's is) and target -> joint-position command (rad)."""
        self.act(target)
        return self.q_cmd.copy()
