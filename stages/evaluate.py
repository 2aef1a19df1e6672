"""Stage `evaluate`: the deterministic policy on held-out targets in the physics engine of
`env.physics` (PyBullet or MuJoCo, accurate physics).

With eval.reference: dls the damped-least-squares controller runs the same episodes, its figures
beside the policy's. Writes out/eval.json, out/eval_episodes.csv, out/eval_cdf.png (the final-distance
CDF) and out/eval.gif (a one-frame placeholder when eval.gif_episodes is 0), and logs them into the
MLflow run that `train` opened. Outside the DAG: --model PATH evaluates any checkpoint, --episodes N,
--gui opens a live PyBullet or MuJoCo window (demo mode); such ad-hoc runs write under out/adhoc/ and log
nothing to MLflow.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.evaluate_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="evaluate.py")  # the same as `rlcore evaluate`
