"""Evaluation in the physics engine (`env.physics`: PyBullet or MuJoCo) at accurate settings on
held-out targets, whatever trained the policy."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache
from rlcore.policy.file import Policy
from rlcore.stats import rate_with_interval

SUCCESS_5CM = 0.05


def evaluate(
    policy: Policy,
    params: Params,
    targets: TargetCache,
    episodes: int | None,
    seed: int = 0,
    progress: bool = False,
    gui: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run deterministic episodes on held-out targets: every one once (episodes None), or
    `episodes` of them drawn without replacement while they last."""
    from rlcore.envs.engines import make_reach_env  # physics only here: the twin's evaluation runs without it

    chosen = heldout_targets(targets, episodes, seed)
    env = make_reach_env(params, targets, mode="eval", gui=gui)
    rows = []
    iterator = range(len(chosen))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="evaluate", unit="episode", mininterval=2.0)
    radius = params.env.success_radius
    for i in iterator:
        idx = int(chosen[i])
        obs, info = env.reset(seed=seed + i, options={"target": targets.positions[idx]})
        first_reach = None
        for t in range(params.env.episode_steps):
            with torch.no_grad():
                action = policy(torch.as_tensor(obs).unsqueeze(0))[0].numpy()
            obs, _, _, _, info = env.step(action)
            if first_reach is None and info["distance"] < radius:
                first_reach = t + 1
        rows.append(_row(i, idx, targets, info["distance"], radius, first_reach))
    env.close()
    return summarise(rows, targets.n_levels), rows


def heldout_targets(targets: TargetCache, episodes: int | None, seed: int) -> np.ndarray:
    """The held-out target indices an evaluation visits: every one once (None), or `episodes` of
    them drawn without replacement while they last."""
    rng = np.random.default_rng(seed)
    pool = targets.indices("heldout")
    episodes = len(pool) if episodes is None else episodes
    return pool[rng.permutation(len(pool))[:episodes]] if episodes <= len(pool) else rng.choice(pool, episodes)


def _row(i: int, idx: int, targets: TargetCache, d: float, radius: float, first_reach: int | None) -> dict[str, Any]:
    return {
        "episode": i,
        "target": idx,
        "level": int(targets.level[idx]),
        "final_distance_mm": d * 1000,
        "success": int(d < radius),
        "success_5cm": int(d < SUCCESS_5CM),
        "steps_to_reach": first_reach if first_reach is not None else "",
    }


def evaluate_controller(
    controller: Any, params: Params, targets: TargetCache, episodes: int | None, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`evaluate`'s episodes (same targets, same start states) with the arm driven by a
    `rlcore.policy.controller.Controller`: measured joints in, joint-position commands out."""
    from rlcore.envs.engines import make_reach_env

    chosen = heldout_targets(targets, episodes, seed)
    env = make_reach_env(params, targets, mode="eval")
    radius, rows = params.env.success_radius, []
    for i, idx in enumerate(chosen):
        env.reset(seed=seed + i, options={"target": targets.positions[idx]})
        q, qd = env.arm.joint_state()
        controller.reset(q)
        first_reach, d = None, float("inf")
        for t in range(params.env.episode_steps):
            env.command(controller.step(q, qd, env.target))
            q, qd = env.arm.joint_state()
            d = float(np.linalg.norm(env.target - env.arm.ee_position(fk=True)))
            if first_reach is None and d < radius:
                first_reach = t + 1
        rows.append(_row(i, int(idx), targets, d, radius, first_reach))
    env.close()
    return summarise(rows, targets.n_levels), rows


def summarise(rows: list[dict[str, Any]], n_levels: int) -> dict[str, Any]:
    """eval.json's figures; every success rate comes with its 95% Wilson interval (`_ci_low`,
    `_ci_high`), the range the rate of a much longer evaluation would fall in."""
    dist = np.array([r["final_distance_mm"] for r in rows])
    reached = [r["steps_to_reach"] for r in rows if r["steps_to_reach"] != ""]
    out: dict[str, Any] = {
        "episodes": len(rows),
        **rate_with_interval([r["success"] for r in rows], "success_rate"),
        **rate_with_interval([r["success_5cm"] for r in rows], "success_rate_5cm"),
        "final_distance_mm_median": float(np.median(dist)),
        "final_distance_mm_p90": float(np.percentile(dist, 90)),
        "steps_to_reach_median": float(np.median(reached)) if reached else None,
    }
    for level in range(n_levels):
        out.update(
            rate_with_interval([r["success"] for r in rows if r["level"] == level], f"success_rate_level{level}")
        )
    return out


def describe(metrics: dict[str, Any]) -> list[str]:
    """Printable lines: each success rate with its interval, `success_rate  94.5%  (95% CI 90.4-96.9%)`."""
    lines = []
    for key, value in metrics.items():
        if key.endswith(("_ci_low", "_ci_high")):
            continue
        if key.startswith("success_rate") and value is not None:
            low, high = metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]
            lines.append(f"{key:<26} {value:6.1%}  (95% CI {low:.1%}-{high:.1%})")
        else:
            lines.append(f"{key:<26} {value if not isinstance(value, float) else round(value, 4)}")
    return lines


def write_episodes(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def render_gif(
    policy: Policy, params: Params, targets: TargetCache, path: Path, episodes: int = 3, seed: int = 0
) -> int:
    """A GIF of a few held-out episodes with the target drawn; returns the frame count."""
    from PIL import Image

    from rlcore.envs.engines import make_reach_env

    env = make_reach_env(params, targets, mode="eval", render_mode="rgb_array")
    pool = targets.indices("heldout")
    rng = np.random.default_rng(seed + 1)
    frames = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i, options={"target": targets.positions[rng.choice(pool)]})
        frames.append(env.render())
        for _ in range(params.env.episode_steps):
            with torch.no_grad():
                action = policy(torch.as_tensor(obs).unsqueeze(0))[0].numpy()
            obs, *_ = env.step(action)
            frames.append(env.render())
    env.close()
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / params.env.control_hz), loop=0)
    return len(frames)


def placeholder_gif(path: Path, text: str) -> None:
    """A one-frame GIF that says why there is no animation (the DAG's out/eval.gif always exists)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (360, 40), "white")
    ImageDraw.Draw(image).text((10, 14), text, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def evaluate_batched(
    policy: Policy,
    params: Params,
    targets: TargetCache,
    episodes: int | None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The same held-out evaluation in the batched twin at accurate physics, one episode per env:
    `episodes` sampled held-out targets, or every held-out target once (None). The figure to
    compare with PyBullet's to measure sim-to-sim transfer, and the fast score of tuning and
    `bench seeds`."""
    from rlcore.envs.batched import BatchedReachEnv

    heldout = targets.positions[targets.indices("heldout")]
    every = None if episodes is not None else torch.tensor(heldout, dtype=torch.float32)
    n = episodes if every is None else len(every)
    env = BatchedReachEnv(params.env, params.robot, targets, n, device, mode="eval", seed=seed)
    env.set_level(targets.n_levels - 1)
    obs = env.reset(every)
    policy = policy.to(device)
    with torch.no_grad():
        for _ in range(params.env.episode_steps):
            res = env.step(policy(obs))
            obs = res.obs
    d = res.distance.cpu().numpy()
    return {
        "episodes": n,
        **rate_with_interval(d < params.env.success_radius, "success_rate"),
        **rate_with_interval(d < SUCCESS_5CM, "success_rate_5cm"),
        "final_distance_mm_median": float(np.median(d) * 1000),
        "final_distance_mm_p90": float(np.percentile(d, 90) * 1000),
    }
