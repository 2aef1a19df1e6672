"""Read the serial chain of a URDF: joints, origins, axes, limits and the end-effector link.

Works for any URDF whose path from the root link to the end effector is made of revolute,
continuous and fixed joints (the FANUC bundled here, pybullet_data's kuka_iiwa and franka_panda,
the ROS arms of example-robot-data). Without `robot.ee_link` the end effector is chosen as an
engineer would (`choose_ee`: a conventional tool frame, else the end of the longest revolute
chain). Movable joints off that path (a gripper's jaw, fingers) are held still: not in the action,
the observation or the export. Vendor-namespaced attributes and unknown tags are ignored (`parse`).
"""

from __future__ import annotations

import hashlib
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Protocol

import numpy as np

UNBOUND_NS = "urn:rlcore:unbound"  # the namespace given to a prefix the file uses but never declares
BUNDLED_DIR = Path(__file__).resolve().parent
# a bundled robot's end effector when robot.ee_link is null (others: the chain's last link)
BUNDLED_EE_LINKS = {"fanuc_lrmate200id.urdf": "flange"}


class UrdfError(ValueError):
    """A URDF rlcore cannot use, said in one line naming the file and what to change."""


def parse(path: Path) -> ET.Element:
    """The URDF's root element. A prefix used without its xmlns declaration (`drake:acceleration`)
    is declared here, so its attributes and tags read as namespaced ones that nothing asks for."""
    text = path.read_text(encoding="utf-8", errors="replace")
    declared = set(re.findall(r"xmlns:([A-Za-z_][\w.-]*)\s*=", text))
    used = set(re.findall(r"[<\s/]([A-Za-z_][\w.-]*):[A-Za-z_][\w.-]*(?=[\s=/>])", text)) - {"xml", "xmlns"}
    missing = sorted(used - declared)
    if missing:
        decls = " ".join(f'xmlns:{p}="{UNBOUND_NS}/{p}"' for p in missing)
        text = re.sub(r"<robot\b", f"<robot {decls}", text, count=1)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise UrdfError(f"{path}: not valid XML ({err})") from None
    if root.tag != "robot":
        raise UrdfError(f"{path}: not a URDF (its root element is <{root.tag}>, not <robot>)")
    return root


@dataclass(frozen=True)
class Joint:
    """One joint of the chain, in URDF terms (angles in rad, velocities in rad/s)."""

    name: str
    type: str  # "revolute" (URDF continuous too), "prismatic" or "fixed"
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    lower: float = -math.pi
    upper: float = math.pi
    velocity: float = 1.0
    effort: float = 100.0
    continuous: bool = False  # a URDF continuous joint (its range: the <limit> it states, else +-2 pi)

    @property
    def movable(self) -> bool:
        """Driven by the policy when on the chain: revolute (or continuous)."""
        return self.type == "revolute"


@dataclass(frozen=True)
class Chain:
    """The joints from the root link to the end-effector link, in order."""

    urdf_path: Path
    root: str
    ee_link: str
    joints: tuple[Joint, ...]
    sha256: str = field(repr=False)
    held: tuple[Joint, ...] = ()  # movable joints off the chain (grippers, fingers): held still
    held_positions: tuple[float, ...] = ()  # where each is held (rad or m): robot.held, else 0 in its limits
    ee_reason: str = "robot.ee_link"  # why this end effector: said by the targets stage

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


def _joint(el: ET.Element, path: Path) -> Joint:
    """One <joint> element as a Joint: continuous joints keep the range their <limit> states (a
    full turn each way where it states none), prismatic ones their metres."""
    origin, axis, limit = el.find("origin"), el.find("axis"), el.find("limit")
    jtype = el.get("type", "fixed")
    parent, child = el.find("parent"), el.find("child")
    if parent is None or child is None or not el.get("name"):
        raise UrdfError(f"{path.name}: a <joint> lacks its name, <parent> or <child>")
    kwargs: dict[str, float] = {}
    if jtype == "continuous":
        kwargs.update(lower=-2 * math.pi, upper=2 * math.pi)
    if limit is not None and jtype in ("revolute", "prismatic", "continuous"):
        lower, upper = (
            float(limit.get("lower", kwargs.get("lower", -math.pi))),
            float(limit.get("upper", kwargs.get("upper", math.pi))),
        )
        if upper > lower:
            kwargs.update(lower=lower, upper=upper)
    if limit is not None:
        kwargs.update(velocity=float(limit.get("velocity", 1.0)), effort=float(limit.get("effort", 100.0)))
    return Joint(
        name=el.get("name"),
        type="revolute" if jtype == "continuous" else jtype,
        parent=parent.get("link"),
        child=child.get("link"),
        xyz=_floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0)),
        rpy=_floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0)),
        axis=_floats(axis.get("xyz") if axis is not None else None, (1.0, 0.0, 0.0)),
        continuous=jtype == "continuous",
        **kwargs,
    )


# conventional tool-frame names, best first (case-insensitive shell patterns)
TOOL_FRAMES = (
    ("tool0", "*_tool0"),
    ("tcp", "*_tcp", "*tcp_link"),
    ("flange", "*_flange"),
    ("ee_link", "*_ee_link", "end_effector", "*_end_effector", "*end_effector_link"),
    ("eef", "*_eef", "link_eef", "ee", "*_ee"),
    ("*_hand", "hand"),
)
TOOLING = ("*gripper*", "*finger*", "*jaw*", "*knuckle*", "*claw*")  # joints that move a tool, not the arm


def link_list(links: list[str], most: int = 12) -> str:
    """`its links: a, b, ...` for an error line."""
    shown = ", ".join(links[:most]) + (f", ... ({len(links)} in all)" if len(links) > most else "")
    return f"its links: {shown}"


def _is_tooling(joint: Any) -> bool:
    return any(fnmatch(joint.name.lower(), p) for p in TOOLING)


def _arm_joints(link: str, root: str, by_child: dict[str, Any]) -> int | None:
    """Revolute joints (tooling not counted) from the root to `link`; None if the path crosses a
    prismatic or tooling joint (a finger's or jaw's frame is no arm's end)."""
    count = 0
    while link != root:
        joint = by_child[link]
        if joint.type == "prismatic" or (joint.movable and _is_tooling(joint)):
            return None
        count += joint.movable
        link = joint.parent
    return count


def choose_ee(urdf_name: str, root: str, joints: list[Any]) -> tuple[str, str]:
    """(end-effector link, why) for a tree of `joints` (Joint: name, type, parent, child, movable)."""
    by_child = {j.child: j for j in joints}
    counts = {link: _arm_joints(link, root, by_child) for link in by_child}
    reachable = {link: n for link, n in counts.items() if n}
    for patterns in TOOL_FRAMES:
        named = [link for link in reachable if any(fnmatch(link.lower(), p) for p in patterns)]
        if named:
            best = max(reachable[link] for link in named)
            top = [link for link in named if reachable[link] == best]
            if len(top) > 1:
                raise UrdfError(
                    f"{urdf_name}: {len(top)} tool frames fit equally ({', '.join(top)}): set robot.ee_link to one"
                )
            return top[0], f"a conventional tool-frame name, {best} revolute joints from {root}"
    if not reachable:
        raise UrdfError(f"{urdf_name}: no revolute joint to drive from the root {root}: not an arm rlcore can train")
    most = max(reachable.values())
    # the child links of the last counted joint of each longest chain
    ends = sorted({link for link, n in reachable.items() if n == most and by_child[link].movable})
    if len(ends) > 1:
        raise UrdfError(
            f"{urdf_name}: the tree branches into {len(ends)} chains of {most} revolute joints (ending at "
            f"{', '.join(ends)}) and has no tool frame (tool0, flange, tcp, ...): set robot.ee_link"
        )
    end = ends[0]
    children: dict[str, list[Any]] = {}
    for j in joints:
        children.setdefault(j.parent, []).append(j)
    while len(children.get(end, [])) == 1 and children[end][0].type == "fixed":
        end = children[end][0].child
    return end, f"the end of the longest chain of revolute joints ({most}) from {root}"


def read_chain(urdf: str | Path, ee_link: str | None = None) -> Chain:
    """Read the chain from the root link to `ee_link` (default: chosen by `choose_ee`: a
    bundled robot's own end effector, a conventional tool frame, or the end of the longest chain of
    revolute joints). Movable joints off that chain (grippers, fingers) are the held joints.
    UrdfError (a ValueError) with one line for a URDF that cannot be used."""
    path = resolve_urdf(str(urdf))
    text = path.read_bytes()
    tree = parse(path)
    by_child = {j.child: j for j in (_joint(el, path) for el in tree.findall("joint"))}
    links = [el.get("name") for el in tree.findall("link")]
    roots = [name for name in links if name not in by_child]
    if len(roots) != 1:
        raise UrdfError(f"{path.name}: expected one root link, found {len(roots)} ({', '.join(roots[:5])})")
    root = roots[0]
    bundled = BUNDLED_EE_LINKS.get(path.name) if path.parent == BUNDLED_DIR else None
    if ee_link is not None and ee_link not in links:
        raise UrdfError(f"robot.ee_link = {ee_link!r}: no such link in {path.name} ({link_list(links)})")
    if ee_link is not None:
        why = "robot.ee_link"
    elif bundled:
        ee_link, why = bundled, "the bundled robot's own"
    else:
        ee_link, why = choose_ee(path.name, root, list(by_child.values()))
    joints: list[Joint] = []
    link = ee_link
    while link != root:
        joints.append(by_child[link])
        link = by_child[link].parent
    joints.reverse()
    for j in joints:
        if j.type not in ("revolute", "fixed"):
            raise UrdfError(
                f"{path.name}: joint {j.name} between the root and {ee_link} is {j.type}; "
                "rlcore drives revolute and continuous joints only (set robot.ee_link before it)"
            )
    if not any(j.movable for j in joints):
        raise UrdfError(f"{path.name}: no revolute joint between the root {root} and {ee_link} ({why})")
    on_chain = {j.name for j in joints}
    held = tuple(j for j in by_child.values() if j.type in ("revolute", "prismatic") and j.name not in on_chain)
    positions = tuple(min(max(0.0, j.lower), j.upper) for j in held)
    return Chain(path, root, ee_link, tuple(joints), hashlib.sha256(text).hexdigest(), held, positions, why)


class RobotRef(Protocol):
    """What names a robot: the `robot` params section (rlcore.config.schema.RobotConfig)."""

    urdf: str
    ee_link: str | None
    held: dict[str, float]


def chain_of(robot: RobotRef) -> Chain:
    """The chain of the robot a params section names (robot.urdf, robot.ee_link), its held
    joints at `robot.held`'s positions where given. UrdfError naming a held joint that is not
    one, or a position outside its limits."""
    chain = read_chain(robot.urdf, robot.ee_link)
    held = dict(getattr(robot, "held", None) or {})
    if not held:
        return chain
    names = [j.name for j in chain.held]
    positions = list(chain.held_positions)
    for name, value in held.items():
        if name not in names:
            raise UrdfError(
                f"robot.held.{name}: not a held joint of {chain.urdf_path.name} (held: {', '.join(names) or 'none'})"
            )
        joint = chain.held[names.index(name)]
        if not joint.lower <= value <= joint.upper:
            raise UrdfError(f"robot.held.{name} = {value}: outside its limits [{joint.lower:g}, {joint.upper:g}]")
        positions[names.index(name)] = float(value)
    return replace(chain, held_positions=tuple(positions))


def home_pose(robot: RobotRef, chain: Chain) -> np.ndarray:
    """The home joint angles (float64): `robot.home`, else zero for each joint whose limits hold
    zero and the middle of its range for one whose limits do not (a Kinova's shoulder)."""
    if getattr(robot, "home", None) is not None:
        return np.array(robot.home, dtype=np.float64)
    return default_home(chain)


def default_home(chain: Chain) -> np.ndarray:
    """Zero for each joint whose limits hold zero, the middle of its range for one whose do not."""
    lower, upper, _, _ = limit_arrays(chain)
    return np.where((lower <= 0.0) & (upper >= 0.0), 0.0, (lower + upper) / 2)


def check_home(robot: RobotRef, chain: Chain) -> None:
    """UrdfError naming the joints an explicit `robot.home` puts outside their limits, with a
    home that fits (theirs moved to mid-range)."""
    if getattr(robot, "home", None) is None:
        return
    home = np.array(robot.home, dtype=np.float64)
    lower, upper, _, _ = limit_arrays(chain)
    outside = [k for k in range(chain.dof) if not lower[k] <= home[k] <= upper[k]]
    if outside:
        names = ", ".join(
            f"{chain.movable[k].name} {home[k]:g} not in [{lower[k]:.4g}, {upper[k]:.4g}]" for k in outside
        )
        fixed = [round(float((lower[k] + upper[k]) / 2 if k in outside else home[k]), 4) for k in range(chain.dof)]
        raise UrdfError(f"robot.home: {names}; for example robot.home={fixed}")
