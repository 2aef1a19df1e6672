"""The hardware stage's body (stages/hardware.py): probe every backend, time the candidates, write
out/hardware.json."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rlcore.config.schema import ConfigError, Params
from rlcore.envs import engines
from rlcore.pipeline import placement
from rlcore.pipeline.cli import StageCommand, StageError
from rlcore.robots.chain import chain_of
from rlcore.runtime import files
from rlcore.runtime import probes as hw
from rlcore.runtime.memory import bytes_per_env


def physics_engine(params) -> dict:
    """Which engine `env.physics` resolves to here and why; null where none imports (a GPU box
    training the twin), with the reason."""
    try:
        engine, why = engines.resolve(params.env.physics)
    except ConfigError as err:
        return {"engine": None, "reason": str(err)}
    return {"engine": engine, "reason": why}


def previous_decision(path: Path) -> dict | None:
    """The last decision on this machine, kept in out/hardware_timings.json (no stage depends on
    it, so DVC does not remove it before the stage runs, as it does out/hardware.json)."""
    try:
        return json.loads(path.read_text()).get("decision")
    except (OSError, ValueError, AttributeError):
        return None


def hardware_stage(args: argparse.Namespace, params: Params) -> None:
    """The `hardware` stage with its parsed command line (stages/hardware.py)."""
    probes = hw.probe_all()
    explicit = params.hardware.device != "auto"
    timed_probes = [] if explicit else probes
    timings = placement.measure_devices(params, timed_probes)
    out = Path(args.out)
    timings_path = out.with_name("hardware_timings.json")
    previous = previous_decision(timings_path)
    try:
        from rlcore.robots.collision import collision_points

        per_env = bytes_per_env(params.train, chain_of(params.robot), collision_points(params))
        decided = placement.choose_placement(probes, timings, params.hardware, per_env, previous)
    except hw.HardwareError as err:
        raise StageError(str(err)) from None
    report = {
        "torch": torch.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "probes": [p.stable_dict() for p in probes],
        "decision": decided.to_dict(),
        "physics": physics_engine(params),
    }
    files.write_json(out, report, sort_keys=True)
    volatile = {
        "timings": timings,
        "memory_free_mb": {p.device: p.memory_free_mb for p in probes if p.usable},
        "decision": report["decision"],  # the incumbent of the next run (previous_decision)
    }
    files.write_json(timings_path, volatile, sort_keys=True)
    print(f"{'backend':<9} {'device':<12} {'usable':<6} {'memory MB':>10}  reason / name")
    for p in probes:
        mem = hw._unknown(p.memory_total_mb)
        print(
            f"{p.backend:<9} {str(p.device):<12} {'yes' if p.usable else 'no':<6} {mem:>10}  "
            f"{p.name + ' - ' if p.usable else ''}{p.reason}"
        )
    for dev, t in timings.items():
        print(
            f"timing {dev}: PPO update ({t['n_envs']} envs x {params.train.n_steps} steps, minibatch "
            f"{t['minibatch']}) {t['update_s'] * 1e3:.1f} ms, batched env step {t['env_step_s'] * 1e3:.2f} ms"
        )
    d = decided
    print(
        f"policy on {d.policy_device}, batched env on {d.env_device}; n_envs: bullet {d.n_envs_physics}, "
        f"batched {d.n_envs_twin}; VRAM limit {hw._unknown(d.vram_limit_mb)} MB"
    )
    for reason in d.reasons:
        print(f"  - {reason}")
    physics = report["physics"]
    print(f"physics engine: {physics['engine'] or 'none'} ({physics['reason']})")
    print(f"wrote {out}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/hardware.json", help="where the decision goes (out/hardware.json)")


COMMAND = StageCommand("hardware", hardware_stage, options)
