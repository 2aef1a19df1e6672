"""Run an exported policy on a robot controller: numpy and onnxruntime only, no torch.

    controller = Controller("models/policy.onnx")   # workcell="fanuc_cell@47de049b": trained among obstacles
    controller.reset(q)                      # at the start of a motion, from the measured joints
    q_cmd = controller.step(q, qd, target)   # every control step (1 / control_hz s)

`step` builds the observation the policy was trained on (scaled joints and velocities, flange
position from the URDF chain stored in the model, target, target - flange, the fine offset, previous action), runs
the ONNX model, and integrates its joint-velocity command into a joint-position command clipped
to the URDF limits, as the training env does: q_cmd += joint_velocity / control_hz. Send q_cmd to
the arm's position controller.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rlcore.policy.chain_fk import ChainFK


class WorkcellMismatch(ValueError):
    """The model was trained for another workcell than the one it is asked to run in."""


class Controller:
    """The policy in `model_path` (rlcore's ONNX export) as a joint-position controller.

    `workcell` is the id of the cell it runs in, as rlcore prints it (`fanuc_cell@47de049b`;
    "none": free space). A policy trained among obstacles knows only those: in another cell (or in
    free space) it is refused with WorkcellMismatch unless `other_workcell_ok`."""

    def __init__(
        self, model_path: str | Path, threads: int = 1, workcell: str = "none", other_workcell_ok: bool = False
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # batch 1: one thread answers fastest
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("rlcore.format") != "1":
            raise ValueError(f"{model_path} is not an rlcore policy export (no rlcore.format metadata)")
        self.workcell = meta.get("rlcore.workcell", "none")  # exports before workcells: free space
        self.obstacles = json.loads(meta.get("rlcore.workcell_obstacles", "[]"))
        if self.workcell != workcell and not other_workcell_ok:
            names = ", ".join(o.get("name") or o["shape"] for o in self.obstacles)
            trained = f"workcell {self.workcell} ({names})" if self.obstacles else "free space (workcell none)"
            raise WorkcellMismatch(
                f"{model_path} was trained for {trained}, not workcell {workcell}: pass workcell={self.workcell!r} "
                "where it runs in that cell, or other_workcell_ok=True to run it anyway"
            )
        chain = json.loads(meta["rlcore.chain"])
        movable = [j for j in chain["joints"] if j["movable"]]
        self.joint_names = [j["name"] for j in movable]
        self.lower = np.array([j["lower"] for j in movable])
        self.upper = np.array([j["upper"] for j in movable])
        self.vmax = np.array([j["velocity"] for j in movable])
        self.mid, self.half = (self.upper + self.lower) / 2, (self.upper - self.lower) / 2
        self.dt = 1.0 / float(meta["rlcore.control_hz"])
        self.offset_scale = float(meta.get("rlcore.offset_scale", "0.02"))
        self.fk = ChainFK(chain["joints"])
        self.dof = len(movable)
        self.obs = np.zeros((1, 3 * self.dof + 12), dtype=np.float32)
        self.prev_action = np.zeros(self.dof, dtype=np.float32)
        self.q_cmd = np.zeros(self.dof)

    def reset(self, q: np.ndarray) -> None:
        """Start a motion from the measured joint positions: command = where the arm is."""
        self.q_cmd = np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)
        self.prev_action = np.zeros(self.dof, dtype=np.float32)

    def observation(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The observation the policy was trained on, shape [1, obs_dim] (the env's layout)."""
        d = self.dof
        q, qd, target = np.asarray(q, np.float64), np.asarray(qd, np.float64), np.asarray(target, np.float64)
        ee = self.fk.position(q)
        obs = self.obs[0]
        obs[:d] = (q - self.mid) / self.half
        obs[d : 2 * d] = qd / self.vmax
        obs[2 * d : 2 * d + 3] = ee
        obs[2 * d + 3 : 2 * d + 6] = target
        delta = target - ee
        obs[2 * d + 6 : 2 * d + 9] = delta
        obs[2 * d + 9 : 2 * d + 12] = delta / max(float(np.linalg.norm(delta)), self.offset_scale)
        obs[2 * d + 12 :] = self.prev_action
        return self.obs

    def step(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
        """One control step: measured joints (rad, rad/s) and target (m) -> joint-position command (rad)."""
        action, velocity = self.session.run(None, {"obs": self.observation(q, qd, target)})
        self.prev_action = action[0]
        self.q_cmd = np.clip(self.q_cmd + velocity[0].astype(np.float64) * self.dt, self.lower, self.upper)
        return self.q_cmd.copy()

    def latency(self, steps: int = 2000, seed: int = 0) -> dict[str, float]:
        """Wall time of `step` at batch 1 (observation, inference, integration), in ms: p50, p99."""
        rng = np.random.default_rng(seed)
        qs = rng.uniform(self.lower, self.upper, (steps, self.dof))
        target = self.fk.position(self.mid)
        self.reset(self.mid)
        for q in qs[:100]:  # warm-up
            self.step(q, np.zeros(self.dof), target)
        times = np.empty(steps)
        for i, q in enumerate(qs):
            start = time.perf_counter()
            self.step(q, np.zeros(self.dof), target)
            times[i] = time.perf_counter() - start
        self.reset(self.mid)
        return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}
