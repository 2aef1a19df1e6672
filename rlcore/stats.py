"""What makes a figure a result: binomial intervals for success rates, medians with their spread
for timings, and the summaries over seeds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a success rate (scipy's, without continuity correction).

    It stays inside [0, 1] and is sensible at 0 or n successes, where the normal approximation
    collapses to a point. n = 0 gives (0, 1): nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def rate_with_interval(flags: list[int] | Any, prefix: str) -> dict[str, float | None]:
    """{prefix: rate, prefix_ci_low, prefix_ci_high} from 0/1 flags (None for no flags)."""
    values = [int(f) for f in flags]
    if not values:
        return {prefix: None, f"{prefix}_ci_low": None, f"{prefix}_ci_high": None}
    low, high = wilson_interval(sum(values), len(values))
    return {prefix: sum(values) / len(values), f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two closed intervals share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass
class Spread:
    """Repeated measurements of one figure: the median and how far the runs spread around it."""

    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    @property
    def low(self) -> float:
        return float(min(self.runs))

    @property
    def high(self) -> float:
        return float(max(self.runs))

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the runs lie within 10% of the median's size."""
        return (self.high - self.low) / self.median if self.median else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "spread": self.spread, "runs": self.runs}

    def text(self, fmt: str = ",.0f") -> str:
        """`11,881 (11,356-12,147, spread 6%)`"""
        return f"{self.median:{fmt}} ({self.low:{fmt}}-{self.high:{fmt}}, spread {self.spread:.0%})"


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean, min and max of one figure over seeds."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
