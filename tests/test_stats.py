"""Results, not runs: Wilson intervals against published values, and benchmark medians and
spreads from alternating rounds, measured with a fake clock."""

from __future__ import annotations

import argparse

import pytest

from rlcore.bench import rounds as bench
from rlcore.evaluation.metrics import summarise
from rlcore.pipeline.evaluate import describe
from rlcore.stats import Spread, overlap, rate_with_interval, seed_summary, wilson_interval

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
# (Wilson score interval without continuity correction)
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), NEWCOMBE)
def test_wilson_interval_matches_published_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing measured: nothing known
    low, high = wilson_interval(20, 20)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 0.1611, abs=1e-4)  # mirror of 0/20
    assert wilson_interval(50, 100, confidence=0.99)[0] < wilson_interval(50, 100)[0]  # wider at 99%
    with pytest.raises(ValueError, match="within 0..10"):
        wilson_interval(11, 10)


def test_eval_summary_gives_every_success_rate_an_interval():
    rows = [
        {"level": i % 2, "final_distance_mm": 5.0 + i, "within_5mm": 0, "reach_5mm": "", "settle_5mm": ""}
        | {"action_change": 0.1, "peak_speed_fraction": 0.5, "limit_margin": 0.2, "path_ratio": 1.0}
        for i in range(10)
    ]
    out = summarise(rows, [0.005], success_radius=0.012, n_levels=3)
    assert out["success_rate"] == 0.7  # 5..11 mm of 5..14 mm ended within 12 mm
    assert (out["success_rate_ci_low"], out["success_rate_ci_high"]) == pytest.approx(wilson_interval(7, 10))
    assert out["success_rate_level0"] == 0.8 and out["success_rate_level0_ci_high"] == wilson_interval(4, 5)[1]
    assert out["success_rate_level2"] is None and out["success_rate_level2_ci_low"] is None  # no episodes
    assert out["within_5mm"] == 0.0 and out["within_5mm_ci_high"] == pytest.approx(wilson_interval(0, 10)[1])
    assert out["steps_to_reach_5mm_median"] is None
    assert any(line.split()[:2] == ["success_rate", "70.0%"] and "(39.7%-89.2%)" in line for line in describe(out))
    assert rate_with_interval([], "x") == {"x": None, "x_ci_low": None, "x_ci_high": None}


def test_overlap_and_seed_summary():
    assert overlap((0.1, 0.3), (0.3, 0.5)) and not overlap((0.1, 0.29), (0.3, 0.5))
    assert seed_summary([0.9, 0.95, 1.0]) == pytest.approx({"mean": 0.95, "min": 0.9, "max": 1.0})


class FakeClock:
    """A clock that moves only when a measured run says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_alternating_rounds_give_median_and_spread_from_a_fake_timer():
    clock, calls = FakeClock(), []
    # seconds per 1000 steps, round by round: A runs at 1000, 500, 800 steps/s; B at 250 every round
    durations = {"A": iter([1.0, 2.0, 1.25]), "B": iter([4.0, 4.0, 4.0])}

    def measure(name: str):
        def run() -> int:
            calls.append(name)
            clock.now += next(durations[name])
            return 1000

        return lambda: bench.throughput(run, clock)

    results = bench.alternate({"A": measure("A"), "B": measure("B")}, rounds=3)
    assert calls == ["A", "B", "A", "B", "A", "B"]  # alternating, not A A A B B B
    a, b = results["A"], results["B"]
    assert a.runs == [1000.0, 500.0, 800.0]
    assert a.median == 800.0 and (a.low, a.high) == (500.0, 1000.0)
    assert a.spread == pytest.approx(500 / 800)
    assert b.median == 250.0 and b.spread == 0.0
    assert a.text() == "800 (500-1,000, spread 62%)"


def test_spread_of_one_figure():
    s = Spread([12147.0, 11881.0, 11356.0])
    assert s.median == 11881.0 and s.to_dict()["runs"] == [12147.0, 11881.0, 11356.0]
    assert s.spread == pytest.approx((12147 - 11356) / 11881)


def test_benchmarks_refuse_fewer_than_three_rounds():
    with pytest.raises(argparse.ArgumentTypeError, match=">= 3"):
        bench.rounds_arg("2")
    assert bench.rounds_arg("5") == 5
