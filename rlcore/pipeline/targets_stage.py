"""The `targets` stage: sample reachable, collision-free targets into the cache (data/targets.npz)."""

from __future__ import annotations

import argparse

from rlcore.config.schema import Params
from rlcore.envs.target_build import build_cache
from rlcore.envs.targets import summary
from rlcore.pipeline.cli import StageCommand


def targets_stage(args: argparse.Namespace, params: Params) -> None:
    """Build and save the cache, then print its summary."""
    cache = build_cache(params, progress=True)
    cache.save(params.targets.path)
    print(f"wrote {params.targets.path}: {len(cache.positions)} targets, acceptance {cache.meta['acceptance']:.0%}")
    print(summary(cache))


COMMAND = StageCommand("targets", targets_stage)
