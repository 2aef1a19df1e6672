"""`python -m rlcore.bench gallery`: other people's arms, by `robot.urdf` alone.

For each arm of the ROS-style URDFs that the `example-robot-data` package ships (UR5, Panda, Kinova
Jaco, xArm7, Unitree Z1; `pip install example-robot-data`): the target cache, a training run on the
batched twin at the params' budget, and the held-out evaluation in PyBullet and in MuJoCo, each
beside the reference controller. An arm sets only `robot.urdf`, plus what its row documents (a
slow arm's longer episode). The table gives held-out success with its interval per engine, median
final distance, training time, and the twin's held-out median distance beside the arm's at home.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rlcore.config.schema import Params
from rlcore.pipeline.params import validate

# name -> (URDF below example-robot-data's robots folder, overrides beyond robot.urdf, what it shows)
ARMS: dict[str, tuple[str, list[str], str]] = {
    "ur5": ("ur_description/urdf/ur5_robot.urdf", [], "ros-industrial layout: base, tool0 frames"),
    "panda": ("panda_description/urdf/panda.urdf", [], "7 DoF, prismatic fingers held"),
    "kinova": ("kinova_description/robots/kinova.urdf", ["env.episode_steps=290"], "slow joints, continuous"),
    "xarm7": ("xarm_description/urdf/xarm7.urdf", [], "7 DoF"),
    "z1": ("z1_description/urdf/z1.urdf", [], "gripper on a revolute joint, held"),
}
ENGINES = ("pybullet", "mujoco")


def robots_dir() -> Path:
    """example-robot-data's `robots` folder (its wheel installs it under cmeel.prefix/share)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("example-robot-data")
    except metadata.PackageNotFoundError:
        raise SystemExit("error: the gallery needs example-robot-data: pip install example-robot-data") from None
    folder = Path(str(dist.locate_file("cmeel.prefix/share/example-robot-data/robots")))
    if not folder.is_dir():
        raise SystemExit(f"error: example-robot-data is installed but {folder} is missing")
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `gallery` options of `python -m rlcore.bench`."""
    group = parser.add_argument_group("gallery")
    group.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=None, help="which arms (all five)")
    group.add_argument("--out", default="out/gallery.json", help="the table as JSON (out/gallery.json)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def arm_params(params: Params, name: str, robots: Path) -> Params:
    """The params with this arm's URDF and its documented overrides."""
    from rlcore.pipeline.params import apply_overrides

    rel, extra, _ = ARMS[name]
    data = apply_overrides(params.model_dump(), [f"robot.urdf={robots / rel}", *extra])
    data["robot"].update(ee_link=None, home=None, held={})
    return validate(data, source=f"gallery {name}")


def run_arm(params: Params, name: str, robots: Path, progress: bool) -> dict[str, Any]:
    """One arm: cache, training, twin scores, evaluation on both engines."""
    from rlcore.envs.target_build import build_cache
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.evaluate import evaluate, evaluate_batched
    from rlcore.pipeline.placement import Placement
    from rlcore.policy.file import policy_from_bundle
    from rlcore.robots.chain import chain_of

    params = arm_params(params, name, robots)
    chain = chain_of(params.robot)
    cache = build_cache(params, progress=progress)
    decision = Placement("cpu", "cpu", 2, params.hardware.n_envs_twin or 256, None, ["gallery: CPU"])
    run_params, res = runs.resolve(params, decision)
    start = time.perf_counter()
    summary, bundle = runs.train(run_params, res, cache, None, lambda run, note: None, lambda row: None, progress)
    train_s = time.perf_counter() - start
    policy = policy_from_bundle(bundle, "cpu")
    twin = evaluate_batched(policy, run_params, cache, None, run_params.eval.seed)
    row: dict[str, Any] = {
        "arm": name,
        "urdf": ARMS[name][0],
        "overrides": ARMS[name][1],
        "shows": ARMS[name][2],
        "ee_link": chain.ee_link,
        "ee_reason": chain.ee_reason,
        "dof": chain.dof,
        "held": [j.name for j in chain.held],
        "steps": summary["steps"],
        "train_s": round(train_s, 1),
        "twin": _figures(twin),
        "home_distance_mm_median": float(_home_distance_median(cache) * 1000),
    }
    for engine in ENGINES:
        engine_params = run_params.model_copy(update={"env": run_params.env.model_copy(update={"physics": engine})})
        metrics, _ = evaluate(
            policy,
            engine_params,
            cache,
            engine_params.eval.episodes,
            engine_params.eval.seed,
            progress=progress,
            reference=True,
        )
        row[engine] = _figures(metrics) | _figures(metrics, "reference_")
    return row


def _home_distance_median(cache: Any) -> float:
    """Median distance (m) from the home flange to the held-out targets: an arm that stays put."""
    import numpy as np

    held = cache.positions[cache.indices("heldout")]
    return float(np.median(np.linalg.norm(held - cache.home_position, axis=1)))


def _figures(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The figures the table shows, of the policy or (prefix `reference_`) the reference controller."""
    keys = ("success_rate", "success_rate_ci_low", "success_rate_ci_high", "final_distance_mm_median", "within_1mm")
    keys = keys if prefix else ("episodes", *keys)
    return {prefix + k: metrics[prefix + k] for k in keys if prefix + k in metrics}


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The gallery as printed lines: one row per arm, held-out success (95% interval) and median
    final distance per engine, the reference controller's in PyBullet beside them."""

    def cell(fig: dict[str, Any], prefix: str = "") -> str:
        rate, low, high = (fig.get(f"{prefix}success_rate{end}") for end in ("", "_ci_low", "_ci_high"))
        median = fig.get(f"{prefix}final_distance_mm_median")
        if rate is None or median is None:
            return "-".ljust(30)
        return f"{rate:6.1%} ({low:.0%}-{high:.0%}) {median:6.2f} mm".ljust(30)

    head = f"{'arm':<8}{'dof':>4}  {'end effector':<24}{'train s':>8}  "
    head += "".join(f"{e + ' held-out':<30}" for e in ENGINES) + f"{'reference (pybullet)':<30}twin mm (at home)"
    lines = [head]
    for r in rows:
        cells = "".join(cell(r[e]) for e in ENGINES) + cell(r["pybullet"], "reference_")
        twin = f"{r['twin']['final_distance_mm_median']:.2f} ({r['home_distance_mm_median']:.0f})"
        lines.append(f"{r['arm']:<8}{r['dof']:>4}  {r['ee_link']:<24}{r['train_s']:>8.0f}  {cells}{twin}")
    return lines


def run_command(args: argparse.Namespace, params: Params) -> None:
    """The `gallery` command: every arm asked for, the table, out/gallery.json."""
    from rlcore.runtime import files

    robots = robots_dir()
    rows = []
    for name in args.arms or list(ARMS):
        print(f"gallery: {name} ({ARMS[name][0]}{' ' + ' '.join(ARMS[name][1]) if ARMS[name][1] else ''})")
        rows.append(run_arm(params, name, robots, not args.no_progress))
    for line in table_lines(rows):
        print(line)
    result = {"total_steps": params.train.total_steps, "eval_episodes": params.eval.episodes, "arms": rows}
    files.write_json(Path(args.out), result)
    print(f"wrote {args.out}")
