"""Precision and motion metrics on scripted trajectories whose answers are known by hand, and their
summaries with Wilson intervals."""

from __future__ import annotations

import numpy as np
import pytest

from rlcore.evaluation.metrics import (
    Trajectory,
    episode_metrics,
    first_within,
    radius_name,
    settled_within,
    summarise,
)
from rlcore.stats import wilson_interval

LOWER, UPPER, VMAX = np.array([-1.0, -2.0]), np.array([1.0, 2.0]), np.array([2.0, 4.0])


def straight_line(distances_mm: list[float], actions: list[list[float]] | None = None) -> Trajectory:
    """A flange moving along x towards a target at x = 0.1 m from x = 0: distance after step t as given."""
    d = np.array(distances_mm) / 1000
    flange = np.zeros((len(d) + 1, 3))
    flange[0, 0] = 0.0
    flange[1:, 0] = 0.1 - d
    acts = np.zeros((len(d), 2)) if actions is None else np.array(actions, dtype=np.float32)
    q = np.zeros((len(d), 2))
    return Trajectory(d, acts, q, np.zeros((len(d), 2)), flange, np.array([0.1, 0.0, 0.0]))


def test_radius_names():
    assert [radius_name(r) for r in (0.001, 0.005, 0.02, 0.0005)] == ["1mm", "5mm", "20mm", "0.5mm"]


def test_reach_and_settle_steps():
    d = np.array([30, 15, 4, 6, 3, 0.5, 0.8]) / 1000
    assert first_within(d, 0.005) == 3  # 4 mm at step 3
    assert settled_within(d, 0.005) == 5  # 6 mm at step 4, within from step 5 to the end
    assert first_within(d, 0.001) == 6 and settled_within(d, 0.001) == 6
    assert first_within(d, 0.0001) is None and settled_within(d, 0.0001) is None
    assert settled_within(d, 0.05) == 1  # within from the start
    assert settled_within(np.array([0.001, 0.01]), 0.005) is None  # ends outside


def test_episode_metrics_on_a_scripted_trajectory():
    traj = straight_line([60, 20, 4, 0.5], actions=[[0.5, -0.5], [0.5, 0.5], [0.0, 0.5], [0.0, 0.5]])
    traj.qd[2] = [1.0, -3.0]  # joint 2 at 3/4 of its 4 rad/s limit: the peak
    traj.q[1] = [0.9, 0.0]  # 0.1 rad from the upper limit of a 2 rad range: margin 5%
    row = episode_metrics(traj, [0.001, 0.005, 0.02], LOWER, UPPER, VMAX)
    assert row["final_distance_mm"] == pytest.approx(0.5)
    assert (row["within_1mm"], row["within_5mm"], row["within_20mm"]) == (1, 1, 1)
    assert (row["reach_1mm"], row["reach_5mm"], row["reach_20mm"]) == (4, 3, 3)  # 20 mm is not < 20 mm
    assert row["settle_5mm"] == 3
    # |a_t - a_t-1| over steps and joints: (0 + 1) + (0.5 + 0) + (0 + 0) -> 1.5 / 6
    assert row["action_change"] == pytest.approx(1.5 / 6)
    assert row["peak_speed_fraction"] == pytest.approx(0.75)
    assert row["limit_margin"] == pytest.approx(0.05)
    # path 0 -> 0.04 -> 0.08 -> 0.096 -> 0.0995 m = 99.5 mm over a straight line of 100 mm
    assert row["path_ratio"] == pytest.approx(0.995)


def test_a_detour_doubles_the_path_ratio():
    traj = straight_line([100, 0])
    traj.flange[1] = [0.05, 0.05 * np.sqrt(3), 0.0]  # out 0.1 m and back 0.1 m, the straight line is 0.1 m
    traj.flange[2] = [0.1, 0.0, 0.0]
    row = episode_metrics(traj, [0.005], LOWER, UPPER, VMAX)
    assert row["path_ratio"] == pytest.approx(2.0)


def test_summary_rates_percentiles_and_medians():
    finals = [0.2, 0.4, 0.9, 2.0, 4.5, 7.0, 30.0, 80.0]  # mm
    rows = []
    for f in finals:
        row = episode_metrics(straight_line([50.0, 10.0, f]), [0.001, 0.005], LOWER, UPPER, VMAX)
        rows.append({"level": 0, **row})
    out = summarise(rows, [0.001, 0.005], success_radius=0.02, n_levels=1, prefix="reference_")
    assert out["reference_within_1mm"] == 3 / 8
    assert (out["reference_within_5mm_ci_low"], out["reference_within_5mm_ci_high"]) == pytest.approx(
        wilson_interval(5, 8)
    )
    assert out["reference_success_rate"] == 6 / 8
    assert out["reference_final_distance_mm_median"] == pytest.approx(np.median(finals))
    assert out["reference_final_distance_mm_p99"] == pytest.approx(np.percentile(finals, 99))
    assert out["reference_steps_to_reach_5mm_median"] == 3.0  # every one reached 5 mm at step 3, or never
    assert out["reference_episodes"] == 8 and not any(not k.startswith("reference_") for k in out)
