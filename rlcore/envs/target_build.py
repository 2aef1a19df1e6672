"""Building the reachable-target cache in the engine of `env.physics`: random joint
configurations inside the limits, filtered (floor, J1 axis, workcell azimuth, self-contact, the
obstacles of `env.workcell`), then
binned into difficulty levels (rlcore.envs.targets has the rules and the file format)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.envs.engines import engine_of, make_arm
from rlcore.envs.targets import TargetCache, TargetCacheError, cache_key
from rlcore.robots.chain import home_pose


def build_cache(params: Params, progress: bool = False) -> TargetCache:
    """Sample, check and bin `targets.n` reachable targets (FK and self-contact checks in the
    engine of `env.physics`; the engine is recorded in the metadata, `collision_engine`)."""
    cfg, cell = params.targets, cell_of(params.env)
    arm = make_arm(params.robot, params.env.physics, self_collision=True, cell=cell)
    rng = np.random.default_rng(cfg.seed)
    home = home_pose(params.robot, arm.chain)
    arm.set_joints(home)
    home_pos = arm.ee_position(fk=True)
    if cell and arm.touches_obstacle():
        arm.close()
        raise TargetCacheError(
            f"the arm at its home pose touches an obstacle of env.workcell = {cell.name}: "
            "move the obstacle or robot.home"
        )
    _check_feasible(arm, params)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.n, desc="targets", unit="target")
    try:
        joints, positions, tries, blocked = _sample(arm, params, home, rng, bar)
    finally:
        if bar is not None:
            bar.close()
        arm.close()
    positions_arr = np.array(positions, dtype=np.float32)
    distance = np.linalg.norm(positions_arr - home_pos, axis=1)
    edges = np.quantile(distance, np.linspace(0, 1, cfg.levels + 1)[1:-1]).astype(np.float32)
    level = np.searchsorted(edges, distance, side="right").astype(np.int64)
    heldout = np.zeros(cfg.n, dtype=bool)
    split_rng = np.random.default_rng(cfg.seed + 1)
    heldout[split_rng.permutation(cfg.n)[: int(round(cfg.heldout_fraction * cfg.n))]] = True
    meta = cache_key(params) | {"acceptance": cfg.n / tries, "collision_engine": engine_of(params)}
    if cell:  # the targets the obstacles took, by the level they would have had
        lost = np.linalg.norm(np.array(blocked, dtype=np.float32).reshape(-1, 3) - home_pos, axis=1)
        lost_level = np.searchsorted(edges, lost, side="right")
        meta["dropped_by_obstacles"] = np.bincount(lost_level, minlength=cfg.levels).tolist()
    return TargetCache(
        positions=positions_arr,
        joints=np.array(joints, dtype=np.float32),
        level=level,
        heldout=heldout,
        bin_edges=edges,
        home_position=home_pos.astype(np.float32),
        meta=meta,
    )


FEASIBILITY_SAMPLE = 500  # targets the episode-length check reads before the rest are built
FEASIBLE_FRACTION = 0.9  # of targets a straight joint move at the velocity limits must reach in an episode


def straight_move_steps(joints: np.ndarray, arm: Any, home: np.ndarray, control_hz: int) -> np.ndarray:
    """Control steps a straight joint-space move from `home` to each configuration takes with every
    joint at its velocity limit (a joint with a full turn of range goes the shorter way round)."""
    delta = joints - home
    full_turn = (arm.upper - arm.lower) >= 2 * np.pi - 1e-6
    delta = np.where(full_turn, (delta + np.pi) % (2 * np.pi) - np.pi, delta)
    return np.ceil((np.abs(delta) / (arm.vmax / control_hz)).max(axis=1))


def check_episode_length(joints: np.ndarray, arm: Any, home: np.ndarray, params: Params) -> None:
    """TargetCacheError when a straight joint move at the velocity limits reaches fewer than
    FEASIBLE_FRACTION of the targets within env.episode_steps (an arm too slow for the episode,
    which would train to 0% without a word), giving the episode length that would do: twice the
    steps of the 95th-percentile move, so the arm has as long again to settle."""
    env = params.env
    steps = straight_move_steps(joints, arm, home, env.control_hz)
    reached = float(np.mean(steps <= env.episode_steps))
    if reached < FEASIBLE_FRACTION:
        enough = int(np.ceil(2 * np.percentile(steps, 95) / 10) * 10)
        slowest = ", ".join(f"{v:.2g}" for v in sorted(set(np.round(arm.vmax, 2)))[:3])
        raise TargetCacheError(
            f"robot {arm.chain.urdf_path.name} is too slow for env.episode_steps = {env.episode_steps} "
            f"({env.episode_steps / env.control_hz:g} s): moving straight at its velocity limits ({slowest} rad/s) "
            f"reaches {reached:.0%} of the targets in time (needs {FEASIBLE_FRACTION:.0%}); "
            f"set env.episode_steps={enough}"
        )


def _sample(
    arm: Any, params: Params, home: np.ndarray, rng: np.random.Generator, bar: Any
) -> tuple[list[np.ndarray], list[np.ndarray], int, list[np.ndarray]]:
    """Random configurations inside the limits until `targets.n` pass the workspace, self-contact
    and obstacle checks: (joints, flange positions, configurations tried, flange positions of the
    configurations only an obstacle ruled out). A configuration is clear of the workcell when
    neither the engine nor the twin's collision model (rlcore.robots.collision, checked in
    batches) finds a contact, so training never asks for a target the twin cannot reach."""
    cfg, cell = params.targets, cell_of(params.env)
    joints: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    blocked: list[np.ndarray] = []
    twin = None
    if cell:
        import torch

        from rlcore.robots.collision import ArmCollision

        twin = ArmCollision(arm.chain, cell)
    checked = 0  # configurations the twin has passed
    tries = 0
    while len(positions) < cfg.n or (twin is not None and checked < len(positions)):
        if twin is not None and (len(positions) == cfg.n or len(positions) - checked >= 1000):
            hits = twin.contact(torch.tensor(np.array(joints[checked:]), dtype=torch.float32)).numpy()
            for k in sorted(np.flatnonzero(hits) + checked, reverse=True):
                blocked.append(positions.pop(k))
                joints.pop(k)
            if bar is not None and hits.any():
                bar.update(-int(hits.sum()))
            checked = len(positions)
            continue
        tries += 1
        if tries > 50 * cfg.n:
            raise TargetCacheError(
                f"fewer than 2% of sampled configurations are valid targets (targets.min_height = "
                f"{cfg.min_height}, min_radius = {cfg.min_radius}, max_azimuth_deg = {cfg.max_azimuth_deg}): "
                "lower them, or check robot.ee_link"
            )
        q = rng.uniform(arm.lower, arm.upper)
        arm.set_joints(q)
        pos = arm.ee_position(fk=True)
        if not _in_workspace(pos, params) or arm.in_self_collision():
            continue
        if cell and arm.touches_obstacle():
            blocked.append(pos)
            continue
        joints.append(q)
        positions.append(pos)
        if len(joints) == min(cfg.n, FEASIBILITY_SAMPLE):
            check_episode_length(np.array(joints), arm, home, params)
        if bar is not None:
            bar.update(1)
    return joints, positions, tries, blocked


def _in_workspace(pos: np.ndarray, params: Params) -> bool:
    """Above the floor, away from the J1 axis, inside the workcell's azimuth."""
    cfg = params.targets
    if pos[2] < cfg.min_height or np.hypot(pos[0], pos[1]) < cfg.min_radius:
        return False
    return abs(np.degrees(np.arctan2(pos[1], pos[0]))) <= cfg.max_azimuth_deg


def _check_feasible(arm: object, params: Params, samples: int = 2000) -> None:
    """Before the progress bar: stop with one line when the workspace filters alone leave fewer
    than 2% of random configurations (a separate random stream: the cache itself is unchanged)."""
    rng = np.random.default_rng(params.targets.seed + 7919)
    kept = 0
    for _ in range(samples):
        arm.set_joints(rng.uniform(arm.lower, arm.upper))
        kept += _in_workspace(arm.ee_position(fk=True), params)
    if kept < 0.02 * samples:
        cfg = params.targets
        raise TargetCacheError(
            f"{kept} of {samples} random configurations reach the workspace that targets.min_height = "
            f"{cfg.min_height}, min_radius = {cfg.min_radius} and max_azimuth_deg = {cfg.max_azimuth_deg} "
            "allow: lower them, or check robot.ee_link"
        )
