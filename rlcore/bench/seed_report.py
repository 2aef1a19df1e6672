"""What `bench seeds` prints and writes: the per-seed table, held-out success by training steps,
the comparison of two configurations, the summary JSON and its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlcore.runtime import files
from rlcore.stats import overlap, seed_summary
from rlcore.tracking import runs as tracking

STEP_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)  # of train.total_steps: the by-steps table's columns


def rate_keys(heldout: dict[str, Any]) -> list[str]:
    """The policy's rates in an evaluation summary: within each radius of eval.radii, then the
    success rate (within env.success_radius)."""
    return [k for k in heldout if k.startswith("within_") and not k.endswith(("_ci_low", "_ci_high"))] + [
        "success_rate"
    ]


def by_steps(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Held-out success in the twin at about 10, 25, 50, 75 and 100% of the training steps: for each
    fraction, every seed's score nearest that step (seeds score at the same updates), as mean,
    min and max, with the training time it took (scoring excluded)."""
    curves = [s["curve"] for s in summary["seeds"] if s["curve"]]
    if not curves:
        return []
    rows, seen = [], set()
    for fraction in STEP_FRACTIONS:
        wanted = fraction * summary["total_steps"]
        points = [min(curve, key=lambda p: abs(p["step"] - wanted)) for curve in curves]
        step = int(points[0]["step"])
        if step in seen:
            continue
        seen.add(step)
        rows.append(
            {
                "step": step,
                "train_s": seed_summary([p["train_s"] for p in points])["mean"],
                **seed_summary([p["twin_success_rate"] for p in points]),
            }
        )
    return rows


def by_steps_text(summary: dict[str, Any]) -> list[str]:
    """The by-steps table as printed lines."""
    rows = by_steps(summary)
    if not rows:
        return []
    lines = [f"  held-out success in the twin by training steps ({len(summary['seeds'])} seeds, mean [min-max]):"]
    lines.append(f"  {'steps':>12}  {'train s':>8}  success")
    for r in rows:
        lines.append(f"  {r['step']:>12,}  {r['train_s']:>8.0f}  {r['mean']:6.1%} [{r['min']:.1%}-{r['max']:.1%}]")
    return lines


def _rate(value: float | None, low: float | None, high: float | None) -> str:
    return "-" if value is None else f"{value:6.1%} ({low:.1%}-{high:.1%})"


def summary_text(summary: dict[str, Any]) -> list[str]:
    """The summary as printed lines: a row per seed, the pooled row, the reference's row."""
    h, t = summary["heldout"], summary["target"]
    labels = {"pybullet": "PyBullet, accurate physics", "mujoco": "MuJoCo, accurate physics"}
    where = labels.get(summary["evaluated_in"], "the twin (no physics engine here)")
    keys = rate_keys(summary["seeds"][0]["heldout"])
    names = [k.removeprefix("within_") if k != "success_rate" else "success" for k in keys]
    lines = [
        f"seeds [{summary['label']}] {' '.join(summary['overrides']) or '(params.yaml)'}: "
        f"{len(summary['seeds'])} seeds x {summary['total_steps']:,} steps; held-out figures in {where}",
        f"  {'':<16}"
        + "".join(f"{'within ' + n if n != 'success' else n:<24}" for n in names)
        + f"{'p50/p90/p99 mm':<24}{'trained':<9}time to {t:.0%} ({summary.get('objective', 'success_rate')})",
    ]

    def distances(fig: dict[str, Any], prefix: str = "", end: str = "") -> str:
        vals = [fig.get(f"{prefix}final_distance_mm_{p}{end}") for p in ("median", "p90", "p99")]
        return "/".join("-" if v is None else f"{v:.3g}" for v in vals)

    for s in summary["seeds"]:
        ho = s["heldout"]
        reached = "not reached" if s["time_to_target_s"] is None else f"{s['time_to_target_s']:.0f} s"
        cells = "".join(f"{_rate(ho[k], ho[k + '_ci_low'], ho[k + '_ci_high']):<24}" for k in keys)
        lines.append(f"  {'seed ' + str(s['seed']):<16}{cells}{distances(ho):<24}{s['train_s']:<9.0f}{reached}")
    pooled = "".join(f"{h[k + '_mean']:6.1%} [{h[k + '_min']:.1%}-{h[k + '_max']:.1%}]".ljust(24) for k in keys)
    lines.append(f"  {'mean [min-max]':<16}{pooled}{distances(h, end='_mean'):<24}")
    cis = "".join(
        f"{'(' + format(h[k + '_pooled_ci_low'], '.1%') + '-' + format(h[k + '_pooled_ci_high'], '.1%') + ')':<24}"
        for k in keys
    )
    lines.append(f"  {'pooled 95% CI':<16}{cis}")
    ref = summary.get("reference") or {}
    if ref:
        r = "reference_"
        cells = "".join(
            f"{_rate(ref.get(r + k), ref.get(r + k + '_ci_low'), ref.get(r + k + '_ci_high')):<24}" for k in keys
        )
        lines.append(f"  {'reference (dls)':<16}{cells}{distances(ref, 'reference_'):<24}{'-':<9}(no training)")
    return lines + by_steps_text(summary)


def comparison_text(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Whether two configurations' pooled held-out intervals overlap."""
    ia = (a["heldout"]["success_rate_pooled_ci_low"], a["heldout"]["success_rate_pooled_ci_high"])  # at the radius
    ib = (b["heldout"]["success_rate_pooled_ci_low"], b["heldout"]["success_rate_pooled_ci_high"])
    head = f"a {ia[0]:.1%}-{ia[1]:.1%} vs b {ib[0]:.1%}-{ib[1]:.1%}"
    if overlap(ia, ib):
        return f"compare: the held-out intervals overlap ({head}): no difference shown at {len(a['seeds'])} seeds"
    better = "b" if ib[0] > ia[1] else "a"
    return f"compare: the held-out intervals do not overlap ({head}): {better} is better"


def write_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """out_dir/<label>.json and a figure of each seed's twin score over training time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(out_dir / f"{summary['label']}.json", summary | {"by_steps": by_steps(summary)})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in summary["seeds"]:
        ax.plot(
            [p["train_s"] for p in s["curve"]], [p["twin_success_rate"] for p in s["curve"]], label=f"seed {s['seed']}"
        )
    ax.axhline(summary["target"], color="gray", ls="--", label=f"{summary['target']:.0%}")
    ax.set(xlabel="training time (s, scoring excluded)", ylabel="held-out success (twin)", ylim=(0, 1.02))
    ax.set_title(f"seeds [{summary['label']}]: held-out success while training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{summary['label']}.png", dpi=110)
    plt.close(fig)
    artifacts = [(out_dir / f"{summary['label']}.{ext}", "seeds") for ext in ("json", "png")]
    tracking.log_results(summary["parent_run_id"], {}, artifacts, None, "logging the seeds summary")
