"""What the train stage does, as one function that stages and tuning trials both call.

Resolves the device and sizes from out/hardware.json, checks the memory estimate against the
VRAM limit, trains (rlcore PPO or the stable-baselines3 baseline), and logs to MLflow.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlcore import devices, placement
from rlcore import hardware as hw
from rlcore.config import Params
from rlcore.config_offpolicy import OFF_POLICY
from rlcore.memory import estimate_memory, fit_to_limit, minibatch_size
from rlcore.targets import TargetCache


class SetupError(RuntimeError):
    """Something the user must fix before training (missing inputs, sizes over the limit)."""


@dataclass
class Resolved:
    """Devices and sizes a run will use."""

    policy_device: str
    env_device: str
    n_envs: int
    minibatch: int
    vram_limit_mb: float | None
    estimate_mb: float
    notes: list[str]


def read_hardware(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SetupError(f"{path} is missing: run `dvc repro hardware` (or `python stages/hardware.py`) first")
    try:
        return json.loads(path.read_text())["decision"]
    except (json.JSONDecodeError, KeyError) as err:
        raise SetupError(f"{path} is unreadable ({err}): run `dvc repro hardware` again") from None


def honour_explicit_device(params: Params, decision: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """An explicit `hardware.device` (not auto) that out/hardware.json did not decide is probed
    now: used when usable (returns the new decision and a note), else SetupError with the
    probe's reason. `auto`, or the device already decided, keeps the decision as it is."""
    wanted = params.hardware.device
    if wanted == "auto":
        return decision, None
    canonical = wanted if ":" in wanted or wanted in ("cpu", "mps") else f"{wanted}:0"
    if decision.get("policy_device") == canonical and decision.get("env_device") == canonical:
        return decision, None
    from rlcore.memory import bytes_per_env

    try:
        chosen = placement.choose_placement(hw.probe_all(), {}, params.hardware, bytes_per_env(params))
    except hw.HardwareError as err:
        raise SetupError(str(err)) from None
    note = f"hardware.device = {wanted}: probed and used (out/hardware.json decided {decision.get('policy_device')})"
    return chosen.to_dict(), note


def resolve(params: Params, decision: dict[str, Any]) -> tuple[Params, Resolved]:
    """Pick devices and n_envs; apply the VRAM limit (stop, or shrink with train.auto_fit)."""
    batched = params.env.backend == "batched"
    policy_device = decision["policy_device"]
    env_device = decision["env_device"] if batched else "cpu"
    n_envs = params.train.n_envs or int(decision["n_envs_batched" if batched else "n_envs_bullet"])
    limit = decision.get("vram_limit_mb")
    limit = None if limit in (None, "unknown") else float(limit)
    if params.hardware.vram_limit_mb is not None:
        limit = params.hardware.vram_limit_mb
    notes: list[str] = []
    on_gpu = policy_device != "cpu" or env_device != "cpu"
    if params.train.algo in OFF_POLICY:
        from rlcore.offpolicy import n_envs_for, replay_buffer_mb

        buffer_mb = replay_buffer_mb(params)
        notes.append(
            f"VRAM check skipped for {params.train.algo}: rlcore's memory model is PPO's; SB3 keeps the replay "
            f"buffer ({buffer_mb:.0f} MB) in host memory and puts only its networks and one batch on the device"
        )
        batch = params.train.sac.batch_size if params.train.algo == "sb3_sac" else params.train.dqn.batch_size
        return params, Resolved(policy_device, env_device, n_envs_for(params), batch, limit, buffer_mb, notes)
    estimate = estimate_memory(params, n_envs)
    if limit is not None and on_gpu and estimate.total_mb > limit:
        fitted_envs, fitted_batch = fit_to_limit(params, n_envs, limit)
        if not params.train.auto_fit:
            raise SetupError(
                f"estimated peak device memory {estimate.total_mb:.0f} MB exceeds the VRAM limit {limit:.0f} MB "
                f"(n_envs {n_envs}, minibatch {minibatch_size(params, n_envs)}); largest that fit: "
                f"train.n_envs={fitted_envs} train.minibatch_size={fitted_batch}, or set train.auto_fit=true"
            )
        params = params.model_copy(
            update={"train": params.train.model_copy(update={"n_envs": fitted_envs, "minibatch_size": fitted_batch})}
        )
        notes.append(f"auto_fit: n_envs {n_envs} -> {fitted_envs}, minibatch -> {fitted_batch} to fit {limit:.0f} MB")
        n_envs = fitted_envs
        estimate = estimate_memory(params, n_envs)
    return params, Resolved(
        policy_device, env_device, n_envs, minibatch_size(params, n_envs), limit, estimate.total_mb, notes
    )


def load_targets(params: Params, root: Path) -> TargetCache:
    path = Path(params.targets.path)
    return TargetCache.load(path if path.is_absolute() else root / path, params)


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    """out/train_curve.csv: one row per update, the columns DVC plots read."""
    cols = ["step", "wall_s", "fps", "success_rate", "episode_return", "curriculum_level"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([f"{r[c]:.6g}" if isinstance(r.get(c), float) else r.get(c) for c in cols])


@contextmanager
def _stop_at_update_boundary(trainer: Any) -> Iterator[None]:
    """The first Ctrl-C asks the trainer to stop after the update in progress (so no MLflow write
    or checkpoint is cut in half); a second one interrupts at once. Main thread only; a process
    started with SIGINT ignored (nohup, a background job) keeps ignoring it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def request_stop(signum: int, frame: Any) -> None:
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: stopping after this update (press again to abort at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train_rlcore(
    params: Params,
    res: Resolved,
    targets: TargetCache,
    checkpoint_dir: Path | None,
    on_start: Callable[[Any, str | None], None],
    on_iteration: Callable[[dict], None],
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train rlcore PPO; returns (summary, policy bundle). on_start(trainer, resume_note) lets the
    caller open or reopen its MLflow run before the first update."""
    from rlcore.ppo.trainer import Trainer, make_env

    policy_device = devices.torch_device(res.policy_device)
    env_device = devices.torch_device(res.env_device)
    env = make_env(params, targets, res.n_envs, env_device, params.seed)
    try:
        trainer = Trainer(params, env, policy_device, hw.capabilities(policy_device), checkpoint_dir, targets.n_levels)
        note = trainer.try_resume()
        on_start(trainer, note)
        try:
            with _stop_at_update_boundary(trainer):
                summary = trainer.train(on_iteration, progress=progress)
        except KeyboardInterrupt:  # Ctrl-C: keep everything up to the last finished update
            if checkpoint_dir is not None and trainer.iteration > 0:
                trainer.save_checkpoint()
            raise
        summary["history"] = trainer.history
        return summary, trainer.policy()
    finally:
        close = getattr(env, "close", None)
        if close:
            close()


def cpu_threads(params: Params) -> None:
    """Torch's CPU threads: every core for the batched twin; one with PyBullet workers, which
    own the cores while they step (torch's spinning threads would steal their time). The trainer
    gives the update every core again, while the workers sleep."""
    torch.set_num_threads(1 if params.env.backend == "bullet" else devices.cpu_cores())


def train(
    params: Params,
    res: Resolved,
    targets: TargetCache,
    checkpoint_dir: Path | None,
    on_start: Callable[[Any, str | None], None],
    on_iteration: Callable[[dict], None],
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train whatever `train.algo` names (rlcore PPO, SB3 PPO, SAC or DQN); returns (summary,
    policy bundle). The train stage, tuning trials and `bench algos` all come through here."""
    algo = params.train.algo
    if algo == "rlcore":
        return train_rlcore(params, res, targets, checkpoint_dir, on_start, on_iteration, progress)
    if algo == "sb3":
        from rlcore.baseline import train_sb3

        return train_sb3(params, res, targets, on_start, on_iteration, progress)
    from rlcore.offpolicy import train_offpolicy

    return train_offpolicy(params, res, targets, on_start, on_iteration, progress)
