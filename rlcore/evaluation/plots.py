"""The final-distance CDF: the share of held-out episodes that ended within each distance, on a log
mm axis, the policy beside the reference controller, with the radii of `eval.radii` marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlcore.runtime.files import atomic_path

LABELS = {"policy": "policy", "reference": "reference (damped least squares)"}


def distance_cdf(rows: list[dict[str, Any]], radii: list[float], path: Path, title: str = "") -> Path:
    """Write the CDF of `final_distance_mm` per `controller` of the rows (eval_episodes.csv's) to
    `path` (PNG); returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    floor = 1e-4  # mm: 0.1 um, below what either controller reaches, so zeros stay on the axis
    for controller in dict.fromkeys(str(r.get("controller", "policy")) for r in rows):
        dist = np.sort(
            [max(float(r["final_distance_mm"]), floor) for r in rows if r.get("controller", "policy") == controller]
        )
        share = np.arange(1, len(dist) + 1) / len(dist)
        ax.step(dist, share, where="post", label=f"{LABELS.get(controller, controller)} ({len(dist)} episodes)")
    for r in radii:
        ax.axvline(r * 1000, color="gray", ls=":", lw=1)
        ax.text(r * 1000, 0.02, f" {r * 1000:g} mm", color="gray", fontsize=8)
    ax.set(
        xscale="log",
        xlabel="final distance to target (mm, log)",
        ylabel="share of episodes within",
        ylim=(0, 1.02),
        title=title or "Held-out final distance",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
