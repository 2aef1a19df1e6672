"""Stage `hardware`: probe every backend, time the candidates, write out/hardware.json.

out/hardware.json (what `train` depends on) holds the probes and decisions only, so it is
byte-identical between runs on the same machine; the noisy timings and free memory go to
out/hardware_timings.json, which no stage depends on.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.pipeline.hardware_stage import COMMAND  # noqa: E402

if __name__ == "__main__":
    COMMAND.main(description=__doc__, prog="hardware.py")  # the same as `rlcore hardware`
