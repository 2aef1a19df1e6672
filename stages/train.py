"""Stage `train`: train a policy (rlcore PPO, or SB3's PPO, SAC or DQN) and log the run to MLflow.

Writes models/policy.pt, out/train.json and out/train_curve.csv. Checkpoints go to
train.checkpoint_dir (a persisted DVC output): run the stage again after an interruption and it
resumes, with the same MLflow run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.cli import run_stage, stage_parser  # noqa: E402
from rlcore.pipeline.train_stage import train_stage  # noqa: E402


def main(args, params) -> None:
    train_stage(params, model=args.model, out=args.out, curve=args.curve, hardware=args.hardware)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--hardware", default="out/hardware.json", help="the hardware stage's decision")
    parser.add_argument("--model", default="models/policy.pt", help="where the policy file goes")
    parser.add_argument("--out", default="out/train.json", help="the run's summary (DVC metrics)")
    parser.add_argument("--curve", default="out/train_curve.csv", help="one row per update (DVC plots)")
    run_stage(main, parser.parse_args(), logs_to_mlflow="train")
