"""Precision and motion metrics of reaching episodes, as a robot engineer judges a controller.

Per episode (`episode_metrics`, from its recorded trajectory): the final distance in mm; for each
radius r of `eval.radii`, whether it ended within r, the first step within r (reach) and the step
from which it stayed within r to the end (settle); the mean action change per step and joint; the
peak joint speed as a fraction of its limit; the smallest joint-limit margin as a fraction of the
joint's range; the flange's path length over the straight line from its start to the target.

In a workcell an episode that touches an obstacle ends there as a failure (`collision` 1): its
rates count it as outside every radius. Over episodes (`summarise`): every rate with its 95%
Wilson interval (the collision rate among them in a workcell), final-distance percentiles,
median steps, and the motion figures, under a prefix ("" for the policy, "reference_" for the
reference controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlcore.stats import rate_with_interval

SUCCESS_5CM = 0.05


def radius_name(radius: float) -> str:
    """`1mm`, `5mm`, `20mm`, `0.5mm`: a radius in m as it appears in metric names."""
    return f"{radius * 1000:g}mm"


@dataclass
class Trajectory:
    """One episode as recorded at each control step t = 1..T (index 0 = the reset)."""

    distance: np.ndarray  # (T,) m, flange to target after each step
    action: np.ndarray  # (T, dof) applied actions in [-1, 1]
    q: np.ndarray  # (T, dof) joint positions, rad
    qd: np.ndarray  # (T, dof) joint velocities, rad/s
    flange: np.ndarray  # (T + 1, 3) flange positions, m, the reset's first
    target: np.ndarray  # (3,) m


def first_within(distance: np.ndarray, radius: float) -> int | None:
    """The first step (1-based) with distance < radius, None if never."""
    hits = np.flatnonzero(distance < radius)
    return int(hits[0]) + 1 if len(hits) else None


def settled_within(distance: np.ndarray, radius: float) -> int | None:
    """The step (1-based) from which distance < radius until the end, None if it ends outside."""
    outside = np.flatnonzero(distance >= radius)
    if len(outside) == 0:
        return 1
    last = int(outside[-1]) + 1
    return last + 1 if last < len(distance) else None


def episode_metrics(
    traj: Trajectory,
    radii: list[float],
    lower: np.ndarray,
    upper: np.ndarray,
    vmax: np.ndarray,
    collision: bool | None = None,
) -> dict[str, Any]:
    """One episode's row of figures (see the module docstring); steps never reached are "". In a
    workcell, `collision` says whether it ended on an obstacle: then it is within no radius and
    settles nowhere, its final distance the one where it stopped."""
    d = np.asarray(traj.distance, dtype=np.float64)
    row: dict[str, Any] = {"final_distance_mm": float(d[-1] * 1000)}
    if collision is not None:
        row["collision"] = int(collision)
    for r in radii:
        name = radius_name(r)
        reach, settle = first_within(d, r), settled_within(d, r)
        row[f"within_{name}"] = int(d[-1] < r and not collision)
        row[f"reach_{name}"] = "" if reach is None else reach
        row[f"settle_{name}"] = "" if settle is None or collision else settle
    actions = np.asarray(traj.action, dtype=np.float64)
    row["action_change"] = float(np.abs(np.diff(actions, axis=0)).mean()) if len(actions) > 1 else 0.0
    row["peak_speed_fraction"] = float((np.abs(traj.qd) / vmax).max())
    margin = np.minimum(traj.q - lower, upper - traj.q) / (upper - lower)
    row["limit_margin"] = float(margin.min())
    path = float(np.linalg.norm(np.diff(traj.flange, axis=0), axis=1).sum())
    straight = float(np.linalg.norm(traj.target - traj.flange[0]))
    row["path_ratio"] = path / straight if straight > 1e-9 else float("nan")
    return row


def _steps_median(rows: list[dict[str, Any]], key: str) -> float | None:
    steps = [r[key] for r in rows if r[key] != ""]
    return float(np.median(steps)) if steps else None


def summarise(
    rows: list[dict[str, Any]], radii: list[float], success_radius: float, n_levels: int, prefix: str = ""
) -> dict[str, Any]:
    """eval.json's figures for one controller's episodes (rows of `episode_metrics` with "level");
    every rate comes with its 95% Wilson interval (`_ci_low`, `_ci_high`)."""
    dist = np.array([r["final_distance_mm"] for r in rows])
    clear = np.array([not r.get("collision", 0) for r in rows], dtype=bool)
    success_mm = success_radius * 1000
    out: dict[str, Any] = {
        "episodes": len(rows),
        **rate_with_interval((dist < success_mm) & clear, "success_rate"),
        **rate_with_interval((dist < SUCCESS_5CM * 1000) & clear, "success_rate_5cm"),
    }
    if rows and "collision" in rows[0]:  # a workcell: episodes that ended on an obstacle
        out.update(rate_with_interval(~clear, "collision_rate"))
    for r in radii:
        name = radius_name(r)
        out.update(rate_with_interval([row[f"within_{name}"] for row in rows], f"within_{name}"))
    out.update(
        {
            "final_distance_mm_median": float(np.median(dist)),
            "final_distance_mm_p90": float(np.percentile(dist, 90)),
            "final_distance_mm_p99": float(np.percentile(dist, 99)),
        }
    )
    for r in radii:
        name = radius_name(r)
        out[f"steps_to_reach_{name}_median"] = _steps_median(rows, f"reach_{name}")
        out[f"steps_to_settle_{name}_median"] = _steps_median(rows, f"settle_{name}")
    out.update(
        {
            "action_change_mean": float(np.mean([r["action_change"] for r in rows])),
            "peak_speed_fraction_max": float(np.max([r["peak_speed_fraction"] for r in rows])),
            "limit_margin_min": float(np.min([r["limit_margin"] for r in rows])),
            "path_ratio_median": float(np.nanmedian([r["path_ratio"] for r in rows])),
        }
    )
    for level in range(n_levels):
        at_level = [row for row in rows if row["level"] == level]
        out.update(
            rate_with_interval(
                [r["final_distance_mm"] < success_mm and not r.get("collision", 0) for r in at_level],
                f"success_rate_level{level}",
            )
        )
    return {f"{prefix}{k}": v for k, v in out.items()}
