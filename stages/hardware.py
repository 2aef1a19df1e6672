"""Stage `hardware`: probe every backend, time the candidates, write out/hardware.json.

out/hardware.json (what `train` depends on) holds the probes and decisions only, so it is
byte-identical between runs on the same machine; the noisy timings and free memory go to
out/hardware_timings.json, which no stage depends on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.cli import run_stage, stage_parser  # noqa: E402
from rlcore.pipeline.hardware_stage import hardware_stage  # noqa: E402

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="out/hardware.json")
    run_stage(hardware_stage, parser.parse_args())
