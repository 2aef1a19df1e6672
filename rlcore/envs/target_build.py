"""Building the reachable-target cache in the engine of `env.physics`: random joint
configurations inside the limits, filtered (floor, J1 axis, workcell azimuth, self-contact), then
binned into difficulty levels (rlcore.envs.targets has the rules and the file format)."""

from __future__ import annotations

import numpy as np

from rlcore.config.schema import Params
from rlcore.envs.engines import engine_of, make_arm
from rlcore.envs.targets import TargetCache, TargetCacheError, cache_key


def build_cache(params: Params, progress: bool = False) -> TargetCache:
    """Sample, check and bin `targets.n` reachable targets (FK and self-contact checks in the
    engine of `env.physics`; the engine is recorded in the metadata, `collision_engine`)."""
    cfg = params.targets
    arm = make_arm(params.robot, params.env.physics, self_collision=True)
    rng = np.random.default_rng(cfg.seed)
    home = np.array(params.robot.home or [0.0] * arm.chain.dof)
    arm.set_joints(home)
    home_pos = arm.ee_position(fk=True)
    _check_feasible(arm, params)
    joints, positions = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.n, desc="targets", unit="target")
    tries = 0
    while len(positions) < cfg.n:
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
        if not _in_workspace(pos, params):
            continue
        if arm.in_self_collision():
            continue
        joints.append(q)
        positions.append(pos)
        if bar is not None:
            bar.update(1)
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
    return TargetCache(
        positions=positions_arr,
        joints=np.array(joints, dtype=np.float32),
        level=level,
        heldout=heldout,
        bin_edges=edges,
        home_position=home_pos.astype(np.float32),
        meta=meta,
    )


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
