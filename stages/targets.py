"""Stage `targets`: build the reachable-target cache (data/targets.npz)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.envs.target_build import build_cache  # noqa: E402
from rlcore.envs.targets import summary  # noqa: E402
from rlcore.pipeline.cli import run_stage, stage_parser  # noqa: E402


def main(args, params) -> None:
    cache = build_cache(params, progress=True)
    cache.save(params.targets.path)
    print(f"wrote {params.targets.path}: {len(cache.positions)} targets, acceptance {cache.meta['acceptance']:.0%}")
    print(summary(cache))


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__).parse_args())
