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
from rlcore.evaluation.metrics import SUCCESS_5CM, Trajectory, episode_metrics, radius_name, summarise
from rlcore.evaluation.rollout import evaluate_drivers, heldout_targets
from rlcore.policy.file import Policy, PolicyMismatch, check_policy, policy_from_bundle, read_bundle
from rlcore.runtime import files
from rlcore.runtime.sharing import usable_cores
from rlcore.stats import rate_with_interval

__all__ = ["evaluate", "evaluate_batched", "evaluate_controller", "heldout_targets", "objective_key", "summarise"]

MIN_EPISODES_PER_WORKER = 100  # fewer, and starting a worker process costs more than it saves


def load_checked_policy(path: Path, params: Params) -> tuple[Policy, dict]:
    """The policy in `path`, checked against this run's robot and env: `StageError` with one line
    for a missing, unreadable, foreign or non-finite policy file."""
    from rlcore.pipeline.cli import StageError
    from rlcore.robots.chain import chain_of

    if not path.is_file():
        raise StageError(f"model {path} is missing: run `dvc repro train` (or `python stages/train.py`) first")

    def unreadable(err: Exception) -> StageError:
        why = " ".join(str(err).split())[:200] or type(err).__name__
        return StageError(f"model {path} is not a readable rlcore policy file ({why})")

    try:
        bundle = read_bundle(str(path))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise unreadable(err) from None
    try:
        check_policy(bundle, chain_of(params.robot), params.robot.urdf, params.env, str(path))
    except PolicyMismatch as err:
        raise StageError(str(err)) from None
    try:
        return policy_from_bundle(bundle), bundle
    except Exception as err:  # noqa: BLE001 - sizes fit, contents do not
        raise unreadable(err) from None


def evaluate(
    policy: Policy,
    params: Params,
    targets: TargetCache,
    episodes: int | None,
    seed: int = 0,
    progress: bool = False,
    gui: bool = False,
    reference: bool = False,
    workers: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run deterministic episodes on held-out targets: every one once (episodes None), or
    `episodes` of them drawn without replacement while they last; with `reference`, the
    damped-least-squares controller on the same episodes too (its figures prefixed `reference_`,
    its rows with controller "reference"). `workers` processes (None: `eval.workers`, else every
    core for an evaluation large enough to pay for starting them)."""
    chosen = heldout_targets(targets, episodes, seed)
    drivers = ["policy", "reference"] if reference else ["policy"]
    if gui:
        workers = 1
    elif workers is None:
        cores = usable_cores(params.hardware.cores)
        workers = params.eval.workers or max(1, min(cores, len(chosen) * len(drivers) // MIN_EPISODES_PER_WORKER))
    rows = evaluate_drivers(drivers, params, targets, chosen, seed, policy, workers, progress, gui)
    e = params.eval
    metrics = summarise(rows["policy"], e.radii, params.env.success_radius, targets.n_levels)
    if reference:
        metrics.update(summarise(rows["reference"], e.radii, params.env.success_radius, targets.n_levels, "reference_"))
    return metrics, [{"controller": d, **row} for d in drivers for row in rows[d]]


def evaluate_controller(
    controller: Any, params: Params, targets: TargetCache, episodes: int | None, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`evaluate`'s episodes (same targets, same start states) with the arm driven through the
    torch-free controller API (`rlcore.policy.controller.Controller`, or the reference
    `rlcore.policy.reference.DlsController`): measured joints in, joint-position commands out."""
    from rlcore.envs.engines import make_reach_env

    chosen = heldout_targets(targets, episodes, seed)
    env = make_reach_env(params, targets, mode="eval")
    arm, steps, rows = env.arm, params.env.episode_steps, []
    for i, idx in enumerate(chosen):
        env.reset(seed=seed + i, options={"target": targets.positions[idx]})
        q, qd = env.arm.joint_state()
        controller.reset(q)
        q_cmd = np.clip(q, arm.lower, arm.upper)
        dist, actions = np.empty(steps), np.empty((steps, env.dof))
        qs, qds, flange = np.empty((steps, env.dof)), np.empty((steps, env.dof)), np.empty((steps + 1, 3))
        flange[0] = arm.ee_position(fk=True)
        end, collided = steps, False
        for t in range(steps):
            command = controller.step(q, qd, env.target)
            actions[t] = (command - q_cmd) / (arm.vmax / params.env.control_hz)  # the applied action
            q_cmd = command
            env.command(command)
            q, qd = env.arm.joint_state()
            flange[t + 1] = arm.ee_position(fk=True)
            dist[t], qs[t], qds[t] = np.linalg.norm(env.target - flange[t + 1]), q, qd
            collided = bool(env.cell) and env.arm.touches_obstacle()
            if collided:  # a workcell's obstacle: the episode ends here, a failure
                end = t + 1
                break
        traj = Trajectory(dist[:end], actions[:end], qs[:end], qds[:end], flange[: end + 1], env.target.copy())
        row = {"episode": i, "target": int(idx), "level": int(targets.level[idx])}
        contact = collided if env.cell else None
        rows.append({**row, **episode_metrics(traj, params.eval.radii, arm.lower, arm.upper, arm.vmax, contact)})
    env.close()
    return summarise(rows, params.eval.radii, params.env.success_radius, targets.n_levels), rows


def describe(metrics: dict[str, Any]) -> list[str]:
    """Printable lines, the policy's figures beside the reference's where there are any: each rate
    with its 95% interval, `within_5mm   94.5% (90.4-96.9)   100.0% (99.8-100.0)`."""

    def cell(key: str) -> str:
        value = metrics.get(key)
        if value is None:
            return "-" if key in metrics else ""
        if f"{key}_ci_low" in metrics:
            return f"{value:6.1%} ({metrics[f'{key}_ci_low']:.1%}-{metrics[f'{key}_ci_high']:.1%})"
        return f"{value:g}" if isinstance(value, int) else f"{value:.4g}"

    keys = [k for k in metrics if not k.startswith("reference_") and not k.endswith(("_ci_low", "_ci_high"))]
    with_reference = any(k.startswith("reference_") for k in metrics)
    lines = [f"{'':<32} {'policy':<24} reference (dls)"] if with_reference else []
    for key in keys:
        line = f"{key:<32} {cell(key):<24}"
        lines.append((line + (f" {cell('reference_' + key)}" if with_reference else "")).rstrip())
    return lines


def write_episodes(path: Path, rows: list[dict[str, Any]]) -> None:
    """out/eval_episodes.csv: one row per episode and controller."""
    with files.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
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
            obs, _, touched, _, _ = env.step(action)
            frames.append(env.render())
            if touched:  # a workcell's obstacle ends the episode: its last frame shows where
                break
    env.close()
    images = [Image.fromarray(f) for f in frames]
    with files.atomic_path(path) as tmp:
        duration = int(1000 / params.env.control_hz)
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return len(frames)


def placeholder_gif(path: Path, text: str) -> None:
    """A one-frame GIF that says why there is no animation (the DAG's out/eval.gif always exists)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (360, 40), "white")
    ImageDraw.Draw(image).text((10, 14), text, fill="black")
    with files.atomic_path(path) as tmp:
        image.save(tmp)


def objective_key(radius: float | None) -> str:
    """The metric a precision objective reads: `within_5mm` for 0.005, `success_rate` for None
    (success within env.success_radius)."""
    return "success_rate" if radius is None else f"within_{radius_name(radius)}"


def evaluate_batched(
    policy: Policy,
    params: Params,
    targets: TargetCache,
    episodes: int | None,
    seed: int = 0,
    device: str = "cpu",
    radius: float | None = None,
) -> dict[str, Any]:
    """The same held-out evaluation in the batched twin at accurate physics, one episode per env:
    `episodes` sampled held-out targets, or every held-out target once (None). The figure to
    compare with PyBullet's to measure sim-to-sim transfer, and the fast score of tuning and
    `bench seeds`; `radius` (m) adds its `within_` rate to those of eval.radii."""
    from rlcore.envs.batched import BatchedReachEnv

    heldout = targets.positions[targets.indices("heldout")]
    every = None if episodes is not None else torch.tensor(heldout, dtype=torch.float32)
    n = episodes if every is None else len(every)
    env = BatchedReachEnv(params.env, params.robot, targets, n, device, mode="eval", seed=seed)
    env.set_level(targets.n_levels - 1)
    obs = env.reset(every)
    policy = policy.to(device)
    ended = torch.zeros(n, dtype=torch.bool, device=env.device)  # each env's first episode counts
    collided, final = torch.zeros_like(ended), torch.zeros(n, device=env.device)
    with torch.no_grad():
        for _ in range(params.env.episode_steps):
            res = env.step(policy(obs))
            obs = res.obs
            first = res.done & ~ended
            final = torch.where(first, res.distance, final)
            if res.terminated is not None:
                collided = collided | (first & res.terminated)
            ended = ended | res.done
    d, clear = final.cpu().numpy(), ~collided.cpu().numpy()
    radii = sorted({*params.eval.radii, *([radius] if radius else [])})
    return {
        "episodes": n,
        **rate_with_interval((d < params.env.success_radius) & clear, "success_rate"),
        **rate_with_interval((d < SUCCESS_5CM) & clear, "success_rate_5cm"),
        **(rate_with_interval(~clear, "collision_rate") if env.collision is not None else {}),
        **{k: v for r in radii for k, v in rate_with_interval((d < r) & clear, f"within_{radius_name(r)}").items()},
        "final_distance_mm_median": float(np.median(d) * 1000),
        "final_distance_mm_p90": float(np.percentile(d, 90) * 1000),
        "final_distance_mm_p99": float(np.percentile(d, 99) * 1000),
    }
