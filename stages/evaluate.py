"""Stage `evaluate`: the deterministic policy on held-out targets in the physics engine of
`env.physics` (PyBullet or MuJoCo, accurate physics).

With eval.reference: dls the damped-least-squares controller runs the same episodes, its figures
beside the policy's. Writes out/eval.json, out/eval_episodes.csv, out/eval_cdf.png (the final-distance
CDF) and out/eval.gif (a one-frame placeholder when eval.gif_episodes is 0), and logs them into the
MLflow run that `train` opened. Outside the DAG: --model PATH evaluates any checkpoint, --episodes N,
--gui opens a live PyBullet or MuJoCo window (demo mode); such ad-hoc runs write under out/adhoc/ and log
nothing to MLflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.cli import positive_int, run_stage, stage_parser  # noqa: E402
from rlcore.pipeline.evaluate_stage import evaluate_stage  # noqa: E402

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--model", default=None, help="policy file (default models/policy.pt)")
    parser.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes (default eval.episodes: every held-out target)"
    )
    parser.add_argument("--gui", action="store_true", help="show a live PyBullet or MuJoCo window")
    parser.add_argument("--out", default=None, help="default out/eval.json (out/adhoc/ for ad-hoc runs)")
    parser.add_argument("--episodes-csv", default=None, help="default out/eval_episodes.csv (one row per episode)")
    parser.add_argument("--gif", default=None, help="default out/eval.gif")
    parser.add_argument("--cdf", default=None, help="default out/eval_cdf.png (final-distance CDF)")
    run_stage(evaluate_stage, parser.parse_args(), logs_to_mlflow="evaluate")
