"""Stage `export`: the trained policy as models/policy.onnx, for a robot controller.

One ONNX graph: observation normaliser, actor mean, action clipping, scaling to joint-velocity
commands (rlcore/policy/onnx_export.py). The stage checks onnxruntime against the torch policy on
`export.parity_observations` observations (held-out states included) and stops if they differ by
more than 1e-5; drives PyBullet with the torch-free controller (rlcore/policy/controller.py) on
`export.controller_episodes` held-out targets at accurate physics beside the torch policy on the
same episodes; times the controller per step; writes out/export.json. Into the MLflow run that
`train` opened it logs the model with MLflow's onnx flavor, registered as `rlcore-reach` from
`export.register_min_success` held-out success, with the alias `champion` on the best version.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.export_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="export.py")  # the same as `rlcore export`
