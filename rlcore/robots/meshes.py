"""A URDF's meshes found as ROS finds them: `package://NAME/...` through ROS_PACKAGE_PATH or the
file's ancestor folders, and the copy the physics engines load (every mesh path absolute, the rest
of the file as it was; COLLADA converted for MuJoCo).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from rlcore.robots.chain import UrdfError

MESH_FILENAME = re.compile(r'(<mesh\b[^>]*?\bfilename\s*=\s*")([^"]+)(")', re.S)


def package_dirs(name: str, urdf: Path) -> list[Path]:
    """Where `package://NAME` may be: a folder named NAME, or holding a package.xml that names it,
    at or below each ROS_PACKAGE_PATH entry; then the URDF's ancestor folders and their children."""
    found: list[Path] = []
    for entry in filter(None, os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep)):
        found += _crawl(Path(entry), name)
    for folder in urdf.resolve().parents:
        if _is_package(folder, name):
            found.append(folder)
        found += [d for d in (folder / name,) if d.is_dir() and _is_package(d, name)]
    return list(dict.fromkeys(found))


def _crawl(base: Path, name: str, depth: int = 4) -> list[Path]:
    """Packages named `name` at or below `base` (as rospack crawls a ROS_PACKAGE_PATH entry), at
    most `depth` folders down, hidden folders skipped."""
    if not base.is_dir():
        return []
    found, level = [], [base]
    for _ in range(depth + 1):
        found += [d for d in level if _is_package(d, name)]
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    return found


def _is_package(folder: Path, name: str) -> bool:
    """A folder named `name`, or one whose package.xml declares `<name>name</name>`."""
    if folder.name == name:
        return True
    manifest = folder / "package.xml"
    if not manifest.is_file():
        return False
    return re.search(rf"<name>\s*{re.escape(name)}\s*</name>", manifest.read_text(errors="replace")) is not None


def resolve_mesh(filename: str, urdf: Path) -> Path:
    """The file a URDF's mesh path names: `package://NAME/rest` through `package_dirs`, `file://`
    and absolute paths as they are, others relative to the URDF's folder. UrdfError, naming the
    mesh and where it looked, when none exists."""
    if filename.startswith("package://"):
        name, _, rest = filename.removeprefix("package://").partition("/")
        places = package_dirs(name, urdf)
        for folder in places:
            if (folder / rest).is_file():
                return (folder / rest).resolve()
        looked = ", ".join(str(p) for p in places) or (
            f"no ROS_PACKAGE_PATH entry or ancestor folder of {urdf.parent} is package {name!r}"
        )
        raise UrdfError(f"{urdf.name}: mesh {filename} not found (looked in: {looked}); set ROS_PACKAGE_PATH")
    path = Path(filename.removeprefix("file://"))
    path = path if path.is_absolute() else urdf.parent / path
    if not path.is_file():
        raise UrdfError(f"{urdf.name}: mesh {filename} not found (looked for {path})")
    return path.resolve()


def engine_copy(urdf: Path, convert: dict[str, str] | None = None) -> Path:
    """The URDF the physics engines load: the file with every mesh path made absolute (PyBullet and
    MuJoCo look only beside the file), in a folder of the temp directory named by the file's path
    and content, ROS_PACKAGE_PATH and `convert`, so runs and env workers share it and only the
    first resolves the meshes. `convert` maps a mesh suffix (".dae") to the suffix of a converted
    copy made beside the copy (MuJoCo reads no COLLADA)."""
    text = urdf.read_text(encoding="utf-8", errors="replace")
    named = [str(urdf.resolve()), text, os.environ.get("ROS_PACKAGE_PATH", ""), repr(sorted((convert or {}).items()))]
    key = hashlib.sha256("\0".join(named).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "rlcore-urdf" / key
    target = folder / urdf.name
    if target.is_file():
        return target
    meshes = {m.group(2): resolve_mesh(m.group(2), urdf) for m in MESH_FILENAME.finditer(text)}

    def absolute(match: re.Match) -> str:
        path = meshes[match.group(2)]
        suffix = (convert or {}).get(path.suffix.lower())
        if suffix:
            path = converted_mesh(path, folder, suffix)
        return f"{match.group(1)}{path.as_posix()}{match.group(3)}"

    folder.mkdir(parents=True, exist_ok=True)
    body = MESH_FILENAME.sub(absolute, text)
    tmp = folder / f".{urdf.name}.{os.getpid()}.tmp"
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, target)
    return target


def converted_mesh(path: Path, folder: Path, suffix: str) -> Path:
    """`path` converted to `suffix` (".stl") in `folder`, once (trimesh reads COLLADA through
    pycollada): the scene's meshes in the file's own frame and units, merged."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    out = folder / "meshes" / f"{path.stem}-{digest}{suffix}"
    if out.is_file():
        return out
    try:
        import trimesh
    except ImportError:  # pragma: no cover - a dependency
        raise UrdfError(f"mesh {path} needs converting for MuJoCo: pip install trimesh pycollada") from None
    try:
        loaded = trimesh.load(str(path), force="mesh")
    except Exception as err:  # noqa: BLE001 - any unreadable mesh gets the same line
        raise UrdfError(f"mesh {path} could not be read to convert it for MuJoCo ({err})") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    loaded.export(str(tmp), file_type=suffix.lstrip("."))
    os.replace(tmp, out)
    return out
