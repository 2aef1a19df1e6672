"""Optuna tuning helpers: the search space from params.yaml, trial values, the storage URL.
The memory model that prunes infeasible trials is rlcore.memory; the worker loop is rlcore.study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlcore.config import Params


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
