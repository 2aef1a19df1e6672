"""Stage `report`: benchmarks (rlcore.bench) and a readable report of this pipeline run.

Writes out/report/report.md with PNG figures and out/bench.json (metrics: fps_rlcore, fps_sb3,
ratio_rlcore_vs_sb3, efficiency_*, spread_*, ...), and logs both into the MLflow run that `train` opened.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.bench.report_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="report.py")  # the same as `rlcore report`
