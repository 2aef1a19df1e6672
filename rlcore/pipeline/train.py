"""What the train stage does, as functions the stage, tuning trials and benchmarks all call.

Reads the hardware decision (out/hardware.json), resolves devices and sizes through the
algorithm `train.algo` names, checks its memory need against the VRAM limit, and trains.
MLflow stays outside: callers log through the callbacks.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from rlcore.algos.base import OnIteration, OnStart, Resolved, RunHandle, TrainResult
from rlcore.algos.registry import algorithm_for
from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache
from rlcore.pipeline import placement
from rlcore.pipeline.placement import Placement
from rlcore.robots.chain import chain_of
from rlcore.runtime import files
from rlcore.runtime import probes as hw
from rlcore.runtime.memory import fit_to_limit, minibatch_size
from rlcore.runtime.oscompat import host_memory_mb
from rlcore.runtime.sharing import JobSlot, usable_cores

HOST_FRACTION = 0.8  # of the machine's RAM a CPU run may plan to use

__all__ = ["Resolved", "SetupError", "read_hardware", "resolve", "train"]


class SetupError(RuntimeError):
    """Something the user must fix before training (missing inputs, sizes over the limit)."""


def read_hardware(path: Path) -> Placement:
    """The hardware stage's decision, the one reader of out/hardware.json."""
    if not path.is_file():
        raise SetupError(f"{path} is missing: run `dvc repro hardware` (or `python stages/hardware.py`) first")
    try:
        return Placement.from_dict(json.loads(path.read_text())["decision"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise SetupError(f"{path} is unreadable ({err}): run `dvc repro hardware` again") from None


def check_decided_devices(decision: Placement) -> None:
    """SetupError with the probe's reason when out/hardware.json names a device this machine lacks
    (a workspace copied from another machine)."""
    wanted = {decision.policy_device, decision.env_device} - {"cpu"}
    if not wanted:
        return
    probes = hw.probe_all()
    usable = {p.device for p in probes if p.usable}
    for device in sorted(wanted - usable):
        why = next((p.reason for p in probes if not p.usable and device.startswith(p.backend)), "not found")
        raise SetupError(
            f"out/hardware.json decided device {device}, which this machine lacks ({why}): "
            "run `dvc repro hardware` (or `python stages/hardware.py`) again"
        )


def honour_explicit_device(params: Params, decision: Placement) -> tuple[Placement, str | None]:
    """An explicit `hardware.device` (not auto) that out/hardware.json did not decide is probed
    now: used when usable (returns the new decision and a note), else SetupError with the
    probe's reason. `auto`, or the device already decided, keeps the decision as it is."""
    wanted = params.hardware.device
    if wanted == "auto":
        check_decided_devices(decision)
        return decision, None
    canonical = wanted if ":" in wanted or wanted in ("cpu", "mps") else f"{wanted}:0"
    if decision.policy_device == canonical and decision.env_device == canonical:
        return decision, None
    from rlcore.runtime.memory import bytes_per_env

    try:
        from rlcore.robots.collision import collision_points

        per_env = bytes_per_env(params.train, chain_of(params.robot), collision_points(params))
        chosen = placement.choose_placement(hw.probe_all(), {}, params.hardware, per_env)
    except hw.HardwareError as err:
        raise SetupError(str(err)) from None
    note = f"hardware.device = {wanted}: probed and used (out/hardware.json decided {decision.policy_device})"
    return chosen, note


def resolve(params: Params, decision: Placement) -> tuple[Params, Resolved]:
    """Pick devices and n_envs; apply the VRAM limit to a memory need on the device (stop, or
    shrink with train.auto_fit)."""
    algorithm = algorithm_for(params)
    batched = params.env.backend == "twin"
    policy_device = decision.policy_device
    env_device = decision.env_device if batched else "cpu"
    n_envs = algorithm.n_envs(params, decision.n_envs_for(params.env.backend))
    limit = decision.vram_limit_mb
    if params.hardware.vram_limit_mb is not None:
        limit = params.hardware.vram_limit_mb
    notes: list[str] = []
    on_gpu = policy_device != "cpu" or env_device != "cpu"
    need = algorithm.memory(params, n_envs)
    notes += [need.note] if need.note else []
    host_mb = host_memory_mb()
    if (not on_gpu or not need.on_device) and host_mb and need.mb > HOST_FRACTION * host_mb:
        # on the CPU the estimate is host memory: stop before allocating, or shrink to fit
        cap, where = HOST_FRACTION * host_mb, f"{HOST_FRACTION:.0%} of this machine's {host_mb:,.0f} MB of RAM"
    elif need.on_device and limit is not None and on_gpu and need.mb > limit:
        cap, where = limit, f"the VRAM limit {limit:.0f} MB"
    else:
        where = ""
    if where and not need.on_device:  # SB3's replay buffer: no sizes to shrink
        raise SetupError(
            f"estimated peak memory {need.mb:,.0f} MB exceeds {where}: "
            "lower train.sac.buffer_size or train.dqn.buffer_size"
        )
    if where:
        twin = params.env.backend == "twin"
        from rlcore.robots.collision import collision_points

        points = collision_points(params) if twin else 0
        fitted_envs, fitted_batch = fit_to_limit(params.train, chain_of(params.robot), n_envs, cap, twin, points)
        if not params.train.auto_fit:
            raise SetupError(
                f"estimated peak memory {need.mb:,.0f} MB exceeds {where} "
                f"(n_envs {n_envs}, minibatch {minibatch_size(params.train, n_envs)}); largest that fit: "
                f"train.n_envs={fitted_envs} train.minibatch_size={fitted_batch}, or set train.auto_fit=true"
            )
        params = params.model_copy(
            update={"train": params.train.model_copy(update={"n_envs": fitted_envs, "minibatch_size": fitted_batch})}
        )
        notes.append(f"auto_fit: n_envs {n_envs} -> {fitted_envs}, minibatch -> {fitted_batch} to fit {cap:.0f} MB")
        n_envs = fitted_envs
        need = algorithm.memory(params, n_envs)
    minibatch = algorithm.minibatch(params, n_envs)
    return params, Resolved(policy_device, env_device, n_envs, minibatch, limit, need.mb, notes)


def load_targets(params: Params, root: Path) -> TargetCache:
    path = Path(params.targets.path)
    return TargetCache.load(path if path.is_absolute() else root / path, params)


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    """out/train_curve.csv: one row per update, the columns DVC plots read."""
    cols = ["step", "wall_s", "fps", "success_rate", "episode_return", "curriculum_level"]
    with files.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([f"{r[c]:.6g}" if isinstance(r.get(c), float) else r.get(c) for c in cols])


@contextmanager
def _stop_at_update_boundary(started: dict[str, RunHandle]) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop after the update in progress (so no MLflow write or
    checkpoint is cut in half); a second one, or one before the run started, interrupts at once.
    Main thread only; a process started with SIGINT ignored (nohup, a background job) keeps
    ignoring it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def request_stop(signum: int, frame: Any) -> None:
        run = started.get("run")
        if run is None:
            raise KeyboardInterrupt
        run.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: stopping after this update (press again to abort at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cpu_threads(params: Params) -> None:
    """Torch's CPU threads at the start: `hardware.cores` for the batched twin; one with
    physics-engine workers, which own the cores while they step (torch's spinning threads would
    steal their time). As it trains, the trainer splits the cores with the other rlcore jobs on
    the machine (rlcore.runtime.sharing) and gives them to the update while the workers sleep."""
    torch.set_num_threads(1 if params.env.backend == "physics" else usable_cores(params.hardware.cores))


def train(
    params: Params,
    res: Resolved,
    targets: TargetCache,
    checkpoint_dir: Path | None,
    on_start: OnStart,
    on_iteration: OnIteration,
    progress: bool = True,
) -> TrainResult:
    """Train the algorithm `train.algo` names; returns its summary and policy bundle. on_start(run,
    note) lets the caller open or reopen its MLflow run before the first update; a Ctrl-C stops
    after the update in progress (KeyboardInterrupt)."""
    algorithm = algorithm_for(params)
    started: dict[str, RunHandle] = {}

    def start(run: RunHandle, note: str | None) -> None:
        started["run"] = run
        on_start(run, note)

    with _stop_at_update_boundary(started), JobSlot():
        return algorithm.train(params, res, targets, checkpoint_dir, start, on_iteration, progress)
