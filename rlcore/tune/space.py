"""Optuna tuning helpers: the search space from params.yaml, trial values, the storage URL.
The memory model that prunes infeasible trials is rlcore.runtime.memory; the worker loop is rlcore.tune.study."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlcore.config.schema import Params


class SurplusTrial(Exception):
    """Two workers raced for the last slot: the later trial steps aside (marked FAIL, no work)."""


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one point of the search space (params.yaml `tune.space`) as dotted-key values.

    `layers` draws a width (2**low .. 2**high) and a depth, giving e.g. [64, 64]; `also` copies a
    dimension's value to other params (the critic's layers the same as the actor's)."""
    values: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.type == "layers":
            width = 2 ** trial.suggest_int(f"log2:{key}", int(dim.low), int(dim.high))
            values[key] = [width] * trial.suggest_int(f"depth:{key}", dim.depth[0], dim.depth[1])
        elif dim.type == "pow2":
            values[key] = 2 ** trial.suggest_int(f"log2:{key}", int(dim.low), int(dim.high))
        elif dim.type == "int":
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=dim.step or 1, log=dim.log)
        elif dim.type == "float":
            values[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
        else:
            values[key] = trial.suggest_categorical(key, dim.choices)
        values.update({other: values[key] for other in dim.also})
    return values


def trial_values(trial_params: dict[str, Any], space: dict[str, Any] | None = None) -> dict[str, Any]:
    """Optuna's stored params back to dotted param values (log2:key -> 2**value, a layers
    dimension's width and depth -> its list), with the space's `also` copies when it is given."""
    values: dict[str, Any] = {}
    for k, v in trial_params.items():
        if k.startswith("depth:"):
            continue
        if k.startswith("log2:"):
            key = k[5:]
            depth = trial_params.get(f"depth:{key}")
            values[key] = 2**v if depth is None else [2**v] * depth
        else:
            values[k] = v
    for key, dim in (space or {}).items():
        if key in values:
            values.update({other: values[key] for other in dim.also})
    return values


class ProbeDone(Exception):
    """Raised from a probe's update callback: the throughput is measured, stop training."""


def measure_throughput(
    train_fn: Callable[..., Any], params: Params, res: Any, targets: Any, probe_s: float, warmup_updates: int = 2
) -> float:
    """A configuration's training steps/s on this machine: train it (the train stage's code) for
    `probe_s` seconds after `warmup_updates` updates, and take the median of the per-update rates,
    so one slow update (another process on a shared core) does not set the figure."""
    rows: list[dict[str, Any]] = []

    def on_iteration(row: dict[str, Any]) -> None:
        rows.append(row)
        timed = rows[warmup_updates:]
        if len(timed) >= 3 and timed[-1]["wall_s"] - rows[warmup_updates - 1]["wall_s"] >= probe_s:
            raise ProbeDone

    endless = params.model_copy(update={"train": params.train.model_copy(update={"total_steps": 1 << 40})})
    try:
        train_fn(endless, res, targets, None, lambda *_: None, on_iteration, progress=False)
    except ProbeDone:
        pass
    rates = [
        (b["step"] - a["step"]) / max(b["wall_s"] - a["wall_s"], 1e-9)
        for a, b in zip(rows[warmup_updates - 1 : -1], rows[warmup_updates:])
    ]
    if not rates:
        raise RuntimeError(f"throughput probe: training stopped after {len(rows)} update(s)")
    return statistics.median(rates)


def budget_steps(budget_s: float, steps_per_s: float, steps_per_update: int) -> int:
    """The training budget in steps: budget_s at the measured rate, in whole updates (at least one)."""
    return max(1, round(budget_s * steps_per_s / steps_per_update)) * steps_per_update


def with_values(params: Params, values: dict[str, Any]) -> Params:
    """Params with dotted-key values applied and validated by the same schema."""
    from rlcore.pipeline.params import apply_overrides, validate

    overrides = [f"{k}={v}" for k, v in values.items()]
    return validate(apply_overrides(params.model_dump(), overrides), source="tune.space")


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

    def shown(v: Any) -> str:
        return "[" + ",".join(str(x) for x in v) + "]" if isinstance(v, list) else str(v)

    return "dvc exp run " + " ".join(f"-S {k}={shown(v)}" for k, v in sorted(values.items()))
