"""`python -m rlcore.bench workcell`: the workcell's collision model and its policy, measured.

1. Verdicts: random configurations with the arm within 5 cm of an obstacle (or in one), each
   checked by the twin's collision model (rlcore.robots.collision), PyBullet and MuJoCo: how often
   each pair agrees on touching / not touching, with 95% intervals, and how far the twin's
   clearance is from PyBullet's where the arm is clear.
2. With `--seeds N`: N training seeds on the params (env.workcell; the preset fanuc_cell when the
   params have none) with the train stage's own code, each evaluated in PyBullet on the held-out
   targets beside the reference controller on the same episodes: success within 5 mm with no
   contact, collisions, precision; then mean [min-max] over the seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.stats import rate_with_interval


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `workcell` options of `python -m rlcore.bench`."""
    group = parser.add_argument_group("workcell")
    group.add_argument("--configurations", type=int, default=3000, help="near-obstacle configurations (3000)")
    group.add_argument("--seeds", type=int, default=0, help="training seeds to run and evaluate (0: verdicts only)")
    group.add_argument("--out", default="out/workcell.json", help="the figures as JSON (out/workcell.json)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def near_configurations(arm: Any, count: int, within: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` random configurations (inside the limits) with the arm within `within` m of an
    obstacle or touching one, and the engine's signed distances there."""
    rng = np.random.default_rng(seed)
    qs, ds = [], []
    while len(qs) < count:
        q = rng.uniform(arm.lower, arm.upper)
        arm.set_joints(q)
        d = arm.obstacle_distance(within)
        if d < within:
            qs.append(q)
            ds.append(d)
    return np.array(qs), np.array(ds)


def verdicts(params: Params, count: int, seed: int = 0) -> dict[str, Any]:
    """How often the twin, PyBullet and MuJoCo agree on contact near the obstacles."""
    import torch

    from rlcore.robots.arm import BulletArm
    from rlcore.robots.chain import chain_of
    from rlcore.robots.collision import MARGIN, SPACING, ArmCollision
    from rlcore.robots.mujoco_arm import MujocoArm

    chain, cell = chain_of(params.robot), cell_of(params.env)
    bullet = BulletArm(chain)
    bullet.add_obstacles(cell)
    qs, bullet_d = near_configurations(bullet, count, seed=seed)
    bullet.close()
    mujoco = MujocoArm(chain, cell=cell)
    mujoco_d = np.array([mujoco.set_joints(q) or mujoco.obstacle_distance(0.05) for q in qs])
    twin = ArmCollision(chain, cell)
    q = torch.tensor(qs, dtype=torch.float32)
    touch = {"twin": twin.contact(q).numpy(), "pybullet": bullet_d < 0, "mujoco": mujoco_d < 0}
    clear = bullet_d > 0
    error = np.abs(twin.clearance(q).numpy()[clear] - bullet_d[clear]) * 1000
    out: dict[str, Any] = {
        "workcell": cell.id,
        "configurations": count,
        "touching_pybullet": float(touch["pybullet"].mean()),
        "points": twin.count,
        "spacing_mm": SPACING * 1000,
        "margin_mm": MARGIN * 1000,
        "clearance_error_mm_p50": float(np.percentile(error, 50)),
        "clearance_error_mm_p95": float(np.percentile(error, 95)),
    }
    for a, b in (("twin", "pybullet"), ("twin", "mujoco"), ("pybullet", "mujoco")):
        out.update(rate_with_interval(touch[a] == touch[b], f"agree_{a}_{b}"))
    return out


def run_seed(params: Params, cache: Any, progress: bool) -> dict[str, Any]:
    """One seed: train on the twin, evaluate in PyBullet beside the reference."""
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.evaluate import evaluate
    from rlcore.pipeline.placement import Placement
    from rlcore.policy.file import policy_from_bundle

    decision = Placement("cpu", "cpu", 2, params.hardware.n_envs_twin or 256, None, ["bench workcell: CPU"])
    run_params, res = runs.resolve(params, decision)
    start = time.perf_counter()
    summary, bundle = runs.train(run_params, res, cache, None, lambda run, note: None, lambda row: None, progress)
    train_s = time.perf_counter() - start
    engine = run_params.model_copy(update={"env": run_params.env.model_copy(update={"physics": "pybullet"})})
    metrics, _ = evaluate(
        policy_from_bundle(bundle, "cpu"), engine, cache, None, engine.eval.seed, progress=progress, reference=True
    )
    keys = ("within_5mm", "within_1mm", "success_rate", "collision_rate")
    row: dict[str, Any] = {"seed": params.seed, "steps": summary["steps"], "train_s": round(train_s, 1)}
    for who in ("", "reference_"):
        for key in keys:
            row.update({f"{who}{key}{end}": metrics[f"{who}{key}{end}"] for end in ("", "_ci_low", "_ci_high")})
        row[f"{who}final_distance_mm_median"] = metrics[f"{who}final_distance_mm_median"]
    row["episodes"] = metrics["episodes"]
    return row


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Policy and reference per seed, then mean [min-max] over the seeds."""

    def pct(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.1%} ({row[key + '_ci_low']:.1%}-{row[key + '_ci_high']:.1%})"

    lines = [
        "| seed | train s | policy: within 5 mm, no contact | policy: collisions | policy median | "
        "reference: within 5 mm | reference: collisions | reference median |",
        "|---:|---:|---|---|---:|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['train_s']:.0f} | {pct(r, 'within_5mm')} | {pct(r, 'collision_rate')} | "
            f"{r['final_distance_mm_median']:.2f} mm | {pct(r, 'reference_within_5mm')} | "
            f"{pct(r, 'reference_collision_rate')} | {r['reference_final_distance_mm_median']:.3f} mm |"
        )

    def spread(key: str) -> str:
        v = [r[key] for r in rows]
        return f"{round(float(np.mean(v)), 9):.1%} [{min(v):.1%}-{max(v):.1%}]"  # 0.0995 thrice: 10.0%

    lines.append(
        f"| mean [min-max] | {np.mean([r['train_s'] for r in rows]):.0f} | {spread('within_5mm')} | "
        f"{spread('collision_rate')} | | {spread('reference_within_5mm')} | {spread('reference_collision_rate')} | |"
    )
    return lines


def run_command(args: argparse.Namespace, params: Params) -> None:
    """Measure the verdicts, then (with --seeds) train and evaluate the seeds; print and save."""
    if not cell_of(params.env):
        params = params.model_copy(update={"env": params.env.model_copy(update={"workcell": "fanuc_cell"})})
    progress = not args.no_progress
    result: dict[str, Any] = {"verdicts": verdicts(params, args.configurations)}
    v = result["verdicts"]
    print(
        f"workcell {v['workcell']}: {v['configurations']} configurations within 5 cm of an obstacle "
        f"({v['touching_pybullet']:.0%} touching in PyBullet); twin: {v['points']} points "
        f"{v['spacing_mm']:g} mm apart, margin {v['margin_mm']:g} mm"
    )
    for pair in ("twin_pybullet", "twin_mujoco", "pybullet_mujoco"):
        a, b = pair.split("_")
        key = f"agree_{pair}"
        print(f"  {a} and {b} agree on {v[key]:.2%} ({v[key + '_ci_low']:.2%}-{v[key + '_ci_high']:.2%})")
    print(
        f"  twin clearance vs PyBullet's where clear: {v['clearance_error_mm_p50']:.2f} mm median, "
        f"{v['clearance_error_mm_p95']:.2f} mm p95"
    )
    if args.seeds:
        from rlcore.envs.target_build import build_cache

        cache = build_cache(params, progress=progress)
        rows = []
        for seed in range(args.seeds):
            rows.append(run_seed(params.model_copy(update={"seed": seed}), cache, progress))
            print(f"seed {seed}: {rows[-1]['within_5mm']:.1%} within 5 mm, {rows[-1]['collision_rate']:.1%} collisions")
        result["seeds"] = rows
        print("\n".join(table_lines(rows)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
