"""The reach task as both env backends share it, with neither PyBullet nor SB3: observation size,
the gain law of position control, the reward, and the tensor API of one step (StepResult).
The batched twin imports only this, so it runs where PyBullet does not install (a GPU box)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from rlcore.config.schema import EnvConfig


def obs_size(dof: int) -> int:
    """Length of the observation vector for an arm with `dof` joints."""
    return 3 * dof + 12


def velocity_fraction(action: Any, power: float) -> Any:
    """The joint-velocity command, as a fraction of the limit, of an action in [-1, 1]:
    sign(a) |a|^power (arrays and tensors alike). Power 1 is the action itself; above 1 a small
    action moves finely, so millimetre corrections need no tiny, exact network outputs."""
    return action if power == 1.0 else action * abs(action) ** (power - 1.0)


def fine_offset(delta: Any, distance: Any, scale: float, maximum: Any = max) -> Any:
    """The target offset at millimetre resolution: delta / max(|delta|, scale), linear within
    `scale` of the target and the unit direction beyond it (written once for floats and tensors)."""
    return delta / maximum(distance, scale)


def substep_gain(tracking: float, substeps: int) -> float:
    """PyBullet position gain per substep that closes `tracking` of the gap per control step.

    PyBullet's position motor drives v = clamp(kp (q_cmd - q) / dt_sub, +-vmax) each substep, so
    the gap shrinks by (1 - kp) per substep: kp = 1 - (1 - tracking) ** (1 / substeps). Train and
    eval physics (different substeps) then track alike, and the batched twin replays the same law.
    """
    return 1.0 - (1.0 - tracking) ** (1.0 / substeps)


def reach_reward(distance: Any, action_delta_sq: Any, cfg: EnvConfig, dof: int, tanh: Any = math.tanh) -> Any:
    """The shaped reward, written once for floats (math.tanh) and tensors (torch.tanh)."""
    r = cfg.reward
    precision = r.precision * (1.0 - tanh(distance / r.precision_sigma))
    if r.fine:
        precision = precision + r.fine * (1.0 - tanh(distance / r.fine_sigma))
    return -r.distance * distance + precision - r.action_rate * action_delta_sq / dof


def clearance_penalty(clearance: Any, cfg: EnvConfig, relu: Any = lambda x: max(0.0, x)) -> Any:
    """w max(0, 1 - c / d): the reward's cost of the arm passing within `env.reward.clearance_distance`
    of an obstacle (c: its clearance, m), written once for floats and tensors."""
    r = cfg.reward
    return r.clearance * relu(1.0 - clearance / r.clearance_distance)


class StepResult(NamedTuple):
    """One step of n envs, as tensors on the env device.

    `done` marks episodes that ended: at the time limit, whose value the trainer bootstraps from
    `final_obs` (the last observation before the auto-reset; equal to `obs` where not done), or,
    in a workcell, on touching an obstacle: `terminated` (None in free space, where no episode
    terminates), not bootstrapped. `success`, `distance` and `episode_return` are meaningful
    where `done`.
    """

    obs: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    final_obs: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    episode_return: torch.Tensor
    any_done: bool  # known on the host without a device sync
    terminated: torch.Tensor | None = None  # ended on an obstacle (workcell only)


FRAMED_REACH = 1.16  # m: the bundled FANUC's chain length, which the fallback framing was set on


def camera_framing(chain: Any, targets: Any = None) -> tuple[tuple[float, float, float], float]:
    """(look-at point, distance) of the GIF camera: the middle of the box holding the base, the
    home flange and the targets (2nd to 98th percentile) of a TargetCache, from 1.2 times its
    largest side; without targets, the FANUC's framing scaled by the arm's chain length."""
    if targets is not None and len(targets.positions):
        import numpy as np

        home = np.asarray(targets.home_position, dtype=np.float64)[None]
        points = np.concatenate([np.asarray(targets.positions, dtype=np.float64), np.zeros((1, 3))])
        lo, hi = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
        lo, hi = np.minimum(lo, np.minimum(home[0], 0.0)), np.maximum(hi, np.maximum(home[0], 0.0))
        center = (lo + hi) / 2
        return (float(center[0]), float(center[1]), float(center[2])), float(1.2 * (hi - lo).max())
    reach = sum(math.sqrt(sum(v * v for v in j.xyz)) for j in chain.joints) or FRAMED_REACH
    scale = reach / FRAMED_REACH
    return (0.25 * scale, 0.0, 0.4 * scale), 1.25 * scale
