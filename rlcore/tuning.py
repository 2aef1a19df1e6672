"""Optuna tuning: the VRAM memory model, the search space from params.yaml, the objective.

The memory model estimates a run's peak device memory from its sizes, before any work, so that
a sweep prunes infeasible points and the train stage refuses (or shrinks) sizes that won't fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlcore.config import Params
from rlcore.robots.chain import read_chain

FLOAT = 4  # bytes; nothing float64 on the device
OVERHEAD_MB = 16.0  # allocator rounding and small buffers


@dataclass
class MemoryEstimate:
    """Estimated peak device memory (MB), by part."""

    rollout_mb: float
    env_mb: float
    network_mb: float
    minibatch_mb: float
    overhead_mb: float

    @property
    def total_mb(self) -> float:
        return self.rollout_mb + self.env_mb + self.network_mb + self.minibatch_mb + self.overhead_mb

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in asdict(self).items()}, "total_mb": round(self.total_mb, 2)}


def minibatch_size(params: Params, n_envs: int) -> int:
    """Samples per minibatch: train.minibatch_size, else the rollout split into train.minibatches."""
    rollout = params.train.n_steps * n_envs
    if params.train.minibatch_size:
        return min(params.train.minibatch_size, rollout)
    return max(1, rollout // params.train.minibatches)


def estimate_memory(
    params: Params, n_envs: int, batch: int | None = None, batched_env: bool | None = None
) -> MemoryEstimate:
    """Peak device memory of training with n_envs and minibatch `batch` (MB)."""
    chain = read_chain(params.robot.urdf, params.robot.ee_link)
    dof = chain.dof
    obs_dim, act_dim = 3 * dof + 9, dof
    t = params.train
    batch = batch or minibatch_size(params, n_envs)
    if batched_env is None:
        batched_env = params.env.backend == "batched"
    # rollout storage: obs, actions and 6 per-sample scalars (log-prob, reward, done, value,
    # return, advantage), plus the flattened copies the update indexes into
    per_sample = obs_dim + act_dim + 6
    rollout = 2 * t.n_steps * n_envs * per_sample * FLOAT
    # batched env: state (q, qd, q_cmd, prev action, target, return) and a step's temporaries
    # (observation, FK rotations of each chain joint, substep velocities)
    env_floats = 4 * dof + 4 + 3 * obs_dim + len(chain.joints) * 24 + 4 * dof
    env = n_envs * env_floats * FLOAT if batched_env else 3 * n_envs * obs_dim * FLOAT
    # network: weights, grads, Adam moments (x4)
    sizes_a = [obs_dim, *t.actor_hidden, act_dim]
    sizes_c = [obs_dim, *t.critic_hidden, 1]
    n_params = sum(a * b + b for sizes in (sizes_a, sizes_c) for a, b in zip(sizes, sizes[1:])) + act_dim
    network = 4 * n_params * FLOAT
    # minibatch: inputs and gathered targets, activations kept for backward (pre and post
    # activation per hidden layer) and their gradients
    hidden = sum(t.actor_hidden) + sum(t.critic_hidden)
    minibatch = batch * (per_sample + 2 * 2 * hidden + 4 * act_dim) * FLOAT
    # rollout-time inference over all envs (activations without autograd)
    inference = n_envs * (2 * hidden + obs_dim + 3 * act_dim) * FLOAT
    mb = 1024 * 1024
    return MemoryEstimate(rollout / mb, (env + inference) / mb, network / mb, minibatch / mb, OVERHEAD_MB)


def bytes_per_env(params: Params) -> float:
    """Marginal device memory of one more batched env (state, inference and rollout share)."""
    big, small = estimate_memory(params, 2048, batched_env=True), estimate_memory(params, 1024, batched_env=True)
    return (big.total_mb - small.total_mb) * 1024 * 1024 / 1024


def fit_to_limit(params: Params, n_envs: int, limit_mb: float) -> tuple[int, int]:
    """The largest (n_envs, minibatch) under limit_mb, halving n_envs, then the minibatch."""
    batch = minibatch_size(params, n_envs)
    while n_envs > 1 and estimate_memory(params, n_envs, min(batch, params.train.n_steps * n_envs)).total_mb > limit_mb:
        n_envs //= 2
    batch = min(batch, params.train.n_steps * n_envs)
    while batch > 8 and estimate_memory(params, n_envs, batch).total_mb > limit_mb:
        batch //= 2
    return n_envs, batch


# -- the Optuna study ---------------------------------------------------------------------------


class SurplusTrial(Exception):
    """Two workers raced for the last slot: the later trial steps aside (marked FAIL, no work)."""


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one point of the search space (params.yaml `tune.space`) as dotted-key values."""
    values: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.type == "pow2":
            values[key] = 2 ** trial.suggest_int(f"log2:{key}", int(dim.low), int(dim.high))
        elif dim.type == "int":
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=dim.step or 1, log=dim.log)
        elif dim.type == "float":
            values[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
        else:
            values[key] = trial.suggest_categorical(key, dim.choices)
    return values


def trial_values(trial_params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params back to dotted param values (log2:key -> 2**value)."""
    return {
        (k[5:] if k.startswith("log2:") else k): (2**v if k.startswith("log2:") else v) for k, v in trial_params.items()
    }


def with_values(params: Params, values: dict[str, Any]) -> Params:
    """Params with dotted-key values applied and validated by the same schema."""
    from rlcore.config import apply_overrides, validate

    overrides = [f"{k}={v}" for k, v in values.items()]
    return validate(apply_overrides(params.model_dump(), overrides), source="tune.space")


def is_out_of_memory(err: BaseException) -> bool:
    """torch.OutOfMemoryError, or a backend's RuntimeError saying it ran out of memory."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(err, oom_type) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def storage_url(root: Path, cli_value: str | None) -> str:
    """--storage, else OPTUNA_STORAGE, else sqlite:///<repo>/optuna.db."""
    import os

    return cli_value or os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{(root / 'optuna.db').resolve()}"


def check_storage(url: str) -> None:
    """Raise ValueError (one line) when an Optuna storage URL is malformed or its database driver
    is missing; connects to nothing."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = url.split("@")[-1]  # no password in messages
    try:
        sqlalchemy.create_engine(url).dispose()  # imports the driver, opens no connection
    except ImportError as err:
        raise ValueError(
            f"storage ...@{shown}: its database driver is not installed ({err}); "
            'for PostgreSQL: pip install -e ".[postgres]" (psycopg)'
        ) from None
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise ValueError(f"storage {shown!r} is not a database URL ({err}); e.g. sqlite:///optuna.db") from None


def promote_command(values: dict[str, Any]) -> str:
    """The `dvc exp run -S ...` line that runs the pipeline with a trial's values."""
    return "dvc exp run " + " ".join(f"-S {k}={v}" for k, v in sorted(values.items()))
