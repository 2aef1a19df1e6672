"""Stage `hardware`: probe every backend, time the candidates, write out/hardware.json.

out/hardware.json (what `train` depends on) holds the probes and decisions only, so it is
byte-identical between runs on the same machine; the noisy timings and free memory go to
out/hardware_timings.json, which no stage depends on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlcore import hardware as hw  # noqa: E402
from rlcore.cli import StageError, run_stage, stage_parser  # noqa: E402
from rlcore.tuning import bytes_per_env, minibatch_size  # noqa: E402


def measure(params, probes: list[hw.Probe]) -> dict[str, dict[str, float]]:
    """Time one PPO minibatch update and one batched-env step on each usable device."""
    from rlcore.envs.bullet import obs_size
    from rlcore.robots.chain import read_chain

    dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
    n_envs = params.hardware.n_envs_batched or 4096
    batch = minibatch_size(params, n_envs)
    timings = {}
    for probe in probes:
        if not probe.usable:
            continue
        device = hw.torch_device(probe.device)
        timings[probe.device] = {
            "update_s": hw.time_update(device, obs_size(dof), dof, params.train.actor_hidden, batch),
            "env_step_s": hw.time_env(device, params, n_envs),
            "n_envs": n_envs,
            "minibatch": batch,
        }
    return timings


def main(args, params) -> None:
    probes = hw.probe_all()
    explicit = params.hardware.device != "auto"
    timed_probes = [] if explicit else probes
    timings = measure(params, timed_probes)
    try:
        placement = hw.choose_placement(probes, timings, params.hardware, bytes_per_env(params))
    except hw.HardwareError as err:
        raise StageError(str(err)) from None
    report = {
        "torch": torch.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "probes": [p.stable_dict() for p in probes],
        "decision": placement.to_dict(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    volatile = {"timings": timings, "memory_free_mb": {p.device: p.memory_free_mb for p in probes if p.usable}}
    out.with_name("hardware_timings.json").write_text(json.dumps(volatile, indent=2, sort_keys=True) + "\n")
    print(f"{'backend':<9} {'device':<12} {'usable':<6} {'memory MB':>10}  reason / name")
    for p in probes:
        mem = hw._unknown(p.memory_total_mb)
        print(
            f"{p.backend:<9} {str(p.device):<12} {'yes' if p.usable else 'no':<6} {mem:>10}  "
            f"{p.name + ' - ' if p.usable else ''}{p.reason}"
        )
    for dev, t in timings.items():
        print(
            f"timing {dev}: PPO minibatch update ({t['minibatch']}) {t['update_s'] * 1e3:.2f} ms, "
            f"batched env step ({t['n_envs']} envs) {t['env_step_s'] * 1e3:.2f} ms"
        )
    d = placement
    print(
        f"policy on {d.policy_device}, batched env on {d.env_device}; n_envs: bullet {d.n_envs_bullet}, "
        f"batched {d.n_envs_batched}; VRAM limit {hw._unknown(d.vram_limit_mb)} MB"
    )
    for reason in d.reasons:
        print(f"  - {reason}")
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="out/hardware.json")
    run_stage(main, parser.parse_args())
