"""The workcell: obstacles around the arm, in the base frame (metres), from `env.workcell`.

    env:
      workcell: null            # free space (the default)
      workcell: fanuc_cell      # a shipped preset (PRESETS)
      workcell: cell.yaml       # a YAML file: a list of obstacles, or {obstacles: [...]}
      workcell:                 # or the list itself
        - {name: table, shape: box, position: [0.55, 0, 0.08], size: [0.5, 1.0, 0.04]}
        - {name: post, shape: capsule, position: [0.5, 0.3, 0.5], radius: 0.04, length: 0.8, axis: z}

Boxes are axis-aligned (`size`: full side lengths), spheres have a `radius`, capsules a `radius`
and a `length` (of the segment between the two cap centres) along `axis` x, y or z. The id of a
workcell (`workcell_id`) names it and hashes its obstacles: the target cache and the exported
policy record it, so a cache or a controller built for another cell is caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Vec3 = tuple[float, float, float]


class WorkcellError(ValueError):
    """env.workcell names no preset or readable file, or an obstacle is malformed."""


class Obstacle(BaseModel):
    """One static obstacle: an axis-aligned box, a sphere or a capsule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    shape: Literal["box", "sphere", "capsule"]
    position: Vec3  # centre (m, base frame)
    size: Vec3 | None = None  # box: full side lengths x, y, z (m)
    radius: float | None = Field(None, gt=0.0)  # sphere, capsule (m)
    length: float | None = Field(None, ge=0.0)  # capsule: between the cap centres (m)
    axis: Literal["x", "y", "z"] = "z"  # capsule: the segment's direction

    @model_validator(mode="after")
    def _sizes_given(self) -> Obstacle:
        need = {"box": ("size",), "sphere": ("radius",), "capsule": ("radius", "length")}[self.shape]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.shape} needs {' and '.join(missing)}")
        if self.size is not None and min(self.size) <= 0:
            raise ValueError(f"box size {list(self.size)} must be positive")
        return self

    def bounds(self) -> tuple[Vec3, Vec3]:
        """The axis-aligned bounding box (lower, upper corner)."""
        if self.shape == "box":
            half = [s / 2 for s in self.size]
        else:
            half = [self.radius] * 3
            if self.shape == "capsule":
                half["xyz".index(self.axis)] += self.length / 2
        lo = tuple(c - h for c, h in zip(self.position, half))
        hi = tuple(c + h for c, h in zip(self.position, half))
        return lo, hi  # type: ignore[return-value]


# A FANUC LR Mate 200iD cell (home flange at x 0.465 m, z 0.695 m): a table top in front, a fixture
# pillar standing on it to the left of the home flange, between home and part of the workspace,
# and a safety fence behind the robot.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "fanuc_cell": [
        {"name": "table", "shape": "box", "position": (0.55, 0.0, 0.08), "size": (0.5, 1.0, 0.04)},
        {"name": "pillar", "shape": "box", "position": (0.4, 0.2, 0.55), "size": (0.12, 0.12, 0.9)},
        {"name": "fence", "shape": "box", "position": (-0.55, 0.0, 0.7), "size": (0.02, 1.8, 1.4)},
    ],
}


@dataclass(frozen=True)
class Workcell:
    """A resolved env.workcell: its name (preset, file or "custom") and its obstacles."""

    name: str
    obstacles: tuple[Obstacle, ...]

    @property
    def id(self) -> str:
        """`fanuc_cell@1a2b3c4d`: the name and a hash of the obstacles ("none" in free space)."""
        if not self.obstacles:
            return "none"
        return f"{self.name}@{digest(self.obstacles)}"

    def __bool__(self) -> bool:
        return bool(self.obstacles)


FREE = Workcell("none", ())


def digest(obstacles: tuple[Obstacle, ...]) -> str:
    """Eight hex digits of the obstacles' content (names included)."""
    text = json.dumps([o.model_dump(mode="json") for o in obstacles], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _obstacles(items: Any, where: str) -> tuple[Obstacle, ...]:
    if isinstance(items, dict) and set(items) == {"obstacles"}:
        items = items["obstacles"]
    if not isinstance(items, list) or not items:
        raise WorkcellError(f"{where}: a workcell is a non-empty list of obstacles (box, sphere, capsule)")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(item if isinstance(item, Obstacle) else Obstacle.model_validate(item))
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise WorkcellError(f"{where}[{i}]{'.' + loc if loc else ''}: {msg}") from None
    return tuple(out)


def resolve(value: Any) -> Workcell:
    """The workcell of an `env.workcell` value: None/"none" (free space), a preset name, a YAML
    file's path or a list of obstacles; WorkcellError with one line otherwise."""
    if value is None or value == "none" or value == []:
        return FREE
    if isinstance(value, (list, tuple)):
        return Workcell("custom", _obstacles(list(value), "env.workcell"))
    if not isinstance(value, str):
        raise WorkcellError(f"env.workcell = {value!r}: a preset name, a YAML file or a list of obstacles")
    if value in PRESETS:
        return Workcell(value, _obstacles(PRESETS[value], f"workcell preset {value}"))
    path = Path(value)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise WorkcellError(
            f"env.workcell = {value!r}: no such preset ({', '.join(['none', *PRESETS])}) and not a .yaml file"
        )
    if not path.is_file():
        raise WorkcellError(f"env.workcell = {value!r}: file {path} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        why = " ".join(str(err).split())[:160]
        raise WorkcellError(f"env.workcell = {value!r}: {path} is not readable YAML ({why})") from None
    return Workcell(path.stem, _obstacles(data, str(path)))


def cell_of(env: Any) -> Workcell:
    """The workcell of an env section (its `workcell` key) or a workcell's value itself."""
    return resolve(getattr(env, "workcell", env))
