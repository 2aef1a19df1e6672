"""Stage `targets`: build the reachable-target cache (data/targets.npz)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.targets_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="targets.py")  # the same as `rlcore targets`
