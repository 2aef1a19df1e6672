"""Loading params: a YAML file, `--set KEY=VALUE` overrides, the schema and the checks that need
the robot or the OS, every error as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rlcore.config.schema import ConfigError, Params
from rlcore.config.workcell import resolve
from rlcore.robots.chain import chain_of, check_home
from rlcore.runtime import oscompat


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Params
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if isinstance(p, str))
    key = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{source}: unknown key {key!r} (allowed here: {allowed})"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and msg.startswith(f"{key}."):  # the message names its own key
        return f"{source}: {msg}"
    if e["type"] == "value_error":
        return f"{source}: {key}: {msg}" if key != "(top level)" else f"{source}: {msg}"
    return f"{source}: {key} = {e.get('input')!r}: {msg}"


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'a.b=VALUE' and parse VALUE as YAML (so 3 is an int, 0.1 a float, null None)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set env.success_radius=0.03")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); unknown keys are left for validation to name."""
    data = json.loads(json.dumps(data))
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def check_on_this_machine(params: Params) -> None:
    """What the schema alone cannot know: the URDF, its end-effector link, robot.home's length and
    train.dqn.actions' width against the robot's joints, and hardware.mp_start_method against this
    OS. ValueError with one line naming the key."""
    robot = params.robot
    try:
        chain = chain_of(robot)
    except FileNotFoundError as err:
        raise ValueError(f"robot: {err}") from None
    if robot.home is not None and len(robot.home) != chain.dof:
        urdf = chain.urdf_path.name
        raise ValueError(f"robot: robot.home has {len(robot.home)} angles; {urdf} has {chain.dof} joints")
    check_home(robot, chain)
    resolve(params.env.workcell)  # WorkcellError: one line naming the preset, file or obstacle
    method = params.hardware.mp_start_method
    if method != "auto" and method not in oscompat.start_methods():
        available = ", ".join(oscompat.start_methods())
        raise ValueError(
            f"hardware.mp_start_method: {method!r} is not available on this OS (available: {available}); use auto"
        )
    table = params.train.dqn.actions
    if isinstance(table, list):
        problems = [f"row {i} has {len(row)} values" for i, row in enumerate(table) if len(row) != chain.dof]
        problems += [f"row {i} leaves [-1, 1]" for i, row in enumerate(table) if any(abs(v) > 1 for v in row)]
        if not table or problems:
            raise ValueError(
                f"train.dqn.actions: {problems[0] if problems else 'no rows'}; each row needs {chain.dof} values "
                f"in [-1, 1], one per joint of {robot.urdf}"
            )


def validate(data: dict[str, Any], source: str = "params") -> Params:
    """Validate a nested dict into Params (the schema, then `check_on_this_machine`), raising a
    one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        params = Params.model_validate(data)
        check_on_this_machine(params)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return params


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml, apply `--set` overrides and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    return validate(data, source=str(path))


def load_params_or_defaults(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """load_params, or the schema's defaults with the overrides where the default params.yaml is
    absent (outside a checkout); a named file that is missing is still an error."""
    if str(path) == "params.yaml" and not Path(path).exists():
        return validate(apply_overrides(Params().model_dump(), overrides or []), source="--set")
    return load_params(path, overrides)
