"""Stage `report`: benchmarks (rlcore.bench) and a readable report of this pipeline run.

Writes out/report/report.md with PNG figures and out/bench.json (metrics: fps_rlcore, fps_sb3,
ratio_rlcore_vs_sb3, efficiency_*, spread_*, ...), and logs both into the MLflow run that `train` opened.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.bench.report_stage import report_stage  # noqa: E402
from rlcore.pipeline.cli import run_stage, stage_parser  # noqa: E402

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out-dir", default="out/report", help="report.md and its figures (out/report)")
    parser.add_argument("--bench", default="out/bench.json", help="the benchmark metrics (DVC metrics)")
    run_stage(report_stage, parser.parse_args(), logs_to_mlflow="report")
