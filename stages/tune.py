"""Optuna sweep over params.yaml's `tune.space` under a VRAM limit: `python stages/tune.py --trials 50`.

Run the same command on any number of machines with OPTUNA_STORAGE (PostgreSQL) and
MLFLOW_TRACKING_URI set: the workers share one study and stop at --trials in total. Re-running
with the same --study-name resumes the study. Not a DVC stage: trials call rlcore directly.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.cli import positive_float, positive_int, run_stage, stage_parser  # noqa: E402
from rlcore.tune.stage import tune_stage  # noqa: E402

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--trials", type=positive_int, default=None, help="total trials across all workers")
    parser.add_argument("--study-name", default=None, help="default tune.study_name; letters, digits, _ . -")
    parser.add_argument("--storage", default=None, help="RDB URL (default $OPTUNA_STORAGE or sqlite optuna.db)")
    parser.add_argument("--timeout", type=positive_float, default=None, help="stop starting trials after this many s")
    parser.add_argument("--vram-limit-mb", type=positive_float, default=None)
    parser.add_argument("--steps-per-trial", type=positive_int, default=None)
    parser.add_argument(
        "--objective", choices=["success_after_steps", "success_at_budget"], default=None, help="tune.objective"
    )
    parser.add_argument("--budget-s", type=positive_float, default=None, help="tune.budget_s (success_at_budget)")
    parser.add_argument("--seeds", type=positive_int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    run_stage(tune_stage, parser.parse_args())
