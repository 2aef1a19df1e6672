"""The `targets` stage: sample reachable, collision-free targets into the cache (data/targets.npz)."""

from __future__ import annotations

import argparse

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.envs.target_build import build_cache
from rlcore.envs.targets import summary
from rlcore.pipeline.cli import StageCommand
from rlcore.robots.chain import chain_of, home_pose


def robot_lines(params: Params) -> list[str]:
    """What rlcore made of the robot: root, end effector and why, arm joints, held joints, home."""
    chain = chain_of(params.robot)
    home = home_pose(params.robot, chain)
    held = ", ".join(f"{j.name} at {v:g}" for j, v in zip(chain.held, chain.held_positions)) or "none"
    return [
        f"robot {chain.urdf_path.name}: root {chain.root}, end effector {chain.ee_link} ({chain.ee_reason})",
        f"  arm joints ({chain.dof}): {', '.join(j.name for j in chain.movable)}",
        f"  held joints (not in the action; robot.held): {held}",
        f"  home (rad): [{', '.join(f'{v:.4g}' for v in home)}]"
        + ("" if params.robot.home is not None else " (robot.home null: zero, or mid-range where zero is outside)"),
    ]


def targets_stage(args: argparse.Namespace, params: Params) -> None:
    """Say what rlcore made of the robot, build and save the cache, then print its summary."""
    for line in robot_lines(params):
        print(line)
    cell = cell_of(params.env)
    if cell:
        described = "; ".join(
            f"{o.name or o.shape} ({o.shape} at {', '.join(f'{v:g}' for v in o.position)})" for o in cell.obstacles
        )
        print(f"workcell {cell.id}: {described} (m, base frame)")
    cache = build_cache(params, progress=True)
    cache.save(params.targets.path)
    print(f"wrote {params.targets.path}: {len(cache.positions)} targets, acceptance {cache.meta['acceptance']:.0%}")
    print(summary(cache))


COMMAND = StageCommand("targets", targets_stage)
