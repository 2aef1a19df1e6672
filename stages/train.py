"""Stage `train`: train a policy (rlcore PPO, or SB3's PPO, SAC or DQN) and log the run to MLflow.

Writes models/policy.pt, out/train.json and out/train_curve.csv. Checkpoints go to
train.checkpoint_dir (a persisted DVC output): run the stage again after an interruption and it
resumes, with the same MLflow run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.train_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="train.py")  # the same as `rlcore train`
