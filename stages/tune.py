"""Optuna sweep over params.yaml's `tune.space` under a VRAM limit: `python stages/tune.py --trials 50`.

Run the same command on any number of machines with OPTUNA_STORAGE (PostgreSQL) and
MLFLOW_TRACKING_URI set: the workers share one study and stop at --trials in total. Re-running
with the same --study-name resumes the study. Not a DVC stage: trials call rlcore directly.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.tune.stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="tune.py")  # the same as `rlcore tune`
