"""Read the serial chain of a URDF: joints, origins, axes, limits and the end-effector link.

Works for any URDF whose path from the root link to the end effector is made of revolute,
continuous and fixed joints (the FANUC bundled here, pybullet_data's kuka_iiwa and franka_panda).
"""

from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

BUNDLED_DIR = Path(__file__).resolve().parent
# a bundled robot's end effector when robot.ee_link is null (others: the chain's last link)
BUNDLED_EE_LINKS = {"fanuc_lrmate200id.urdf": "flange"}


@dataclass(frozen=True)
class Joint:
    """One joint of the chain, in URDF terms (angles in rad, velocities in rad/s)."""

    name: str
    type: str  # "revolute" or "fixed" ("continuous" is read as revolute without limits)
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    lower: float = -math.pi
    upper: float = math.pi
    velocity: float = 1.0
    effort: float = 100.0

    @property
    def movable(self) -> bool:
        return self.type == "revolute"


@dataclass(frozen=True)
class Chain:
    """The joints from the root link to the end-effector link, in order."""

    urdf_path: Path
    root: str
    ee_link: str
    joints: tuple[Joint, ...]
    sha256: str = field(repr=False)

    @property
    def movable(self) -> list[Joint]:
        return [j for j in self.joints if j.movable]

    @property
    def dof(self) -> int:
        return len(self.movable)

    @property
    def links(self) -> list[str]:
        """Every link after the root along the chain, ending with the end effector."""
        return [j.child for j in self.joints]


def limit_arrays(chain: Chain) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, velocity, effort) of the chain's movable joints, as float64 arrays."""
    movable = chain.movable
    return tuple(
        np.array([getattr(j, k) for j in movable], dtype=np.float64) for k in ("lower", "upper", "velocity", "effort")
    )


def resolve_urdf(name: str) -> Path:
    """Find a URDF from a bundled name, a pybullet_data-relative path or a file path."""
    candidates = [BUNDLED_DIR / name, BUNDLED_DIR / f"{name}.urdf", Path(name)]
    try:
        import pybullet_data

        candidates.append(Path(pybullet_data.getDataPath()) / name)
    except ImportError:  # pragma: no cover - pybullet is a dependency
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    bundled = sorted(p.stem for p in BUNDLED_DIR.glob("*.urdf"))
    raise FileNotFoundError(
        f"robot.urdf = {name!r}: no such bundled robot ({', '.join(bundled)}), pybullet_data path or file"
    )


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def read_chain(urdf: str | Path, ee_link: str | None = None) -> Chain:
    """Read the chain from the root link to `ee_link` (default: a bundled robot's own end effector,
    else the last link before a branch). An unknown link raises ValueError listing the chain."""
    path = resolve_urdf(str(urdf))
    text = path.read_bytes()
    root_el = ET.fromstring(text)
    by_child: dict[str, Joint] = {}
    children: dict[str, list[str]] = {}
    for el in root_el.findall("joint"):
        origin = el.find("origin")
        axis = el.find("axis")
        limit = el.find("limit")
        jtype = el.get("type", "fixed")
        parent = el.find("parent").get("link")
        child = el.find("child").get("link")
        kwargs = {}
        if limit is not None and jtype == "revolute":
            kwargs.update(
                lower=float(limit.get("lower", -math.pi)),
                upper=float(limit.get("upper", math.pi)),
            )
        if limit is not None:
            kwargs.update(velocity=float(limit.get("velocity", 1.0)), effort=float(limit.get("effort", 100.0)))
        joint = Joint(
            name=el.get("name"),
            type="revolute" if jtype == "continuous" else jtype,
            parent=parent,
            child=child,
            xyz=_floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0)),
            rpy=_floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0)),
            axis=_floats(axis.get("xyz") if axis is not None else None, (1.0, 0.0, 0.0)),
            **kwargs,
        )
        by_child[child] = joint
        children.setdefault(parent, []).append(child)
    links = [el.get("name") for el in root_el.findall("link")]
    roots = [name for name in links if name not in by_child]
    if len(roots) != 1:
        raise ValueError(f"{path}: expected one root link, found {roots}")
    root = roots[0]
    chain_links = [root]  # root to the last link before a branch
    while len(children.get(chain_links[-1], [])) == 1:
        chain_links.append(children[chain_links[-1]][0])
    if ee_link is None:
        ee_link = BUNDLED_EE_LINKS.get(path.name) if path.parent == BUNDLED_DIR else None
        ee_link = ee_link or chain_links[-1]
    elif ee_link not in links:
        raise ValueError(
            f"robot.ee_link = {ee_link!r}: no such link in {path.name} (its chain: {', '.join(chain_links)})"
        )
    joints: list[Joint] = []
    link = ee_link
    while link != root:
        joints.append(by_child[link])
        link = by_child[link].parent
    joints.reverse()
    for j in joints:
        if j.type not in ("revolute", "fixed"):
            raise ValueError(f"{path.name}: joint {j.name} is {j.type}; only revolute/fixed chains")
    return Chain(path, root, ee_link, tuple(joints), hashlib.sha256(text).hexdigest())


class RobotRef(Protocol):
    """What names a robot: the `robot` params section (rlcore.config.schema.RobotConfig)."""

    urdf: str
    ee_link: str | None


def chain_of(robot: RobotRef) -> Chain:
    """The chain of the robot a params section names (robot.urdf, robot.ee_link)."""
    return read_chain(robot.urdf, robot.ee_link)
