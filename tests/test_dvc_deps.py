"""dvc.yaml cannot drift from the code: each stage's deps cover every rlcore module its script
imports (at the top or inside functions, found with ast), the robot files, and its params cover
every params section that code reads. Touching a file in a stage's closure makes `dvc status`
report the stage as changed."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, copy_repo, dvc, imported_names, module_file

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SECTIONS = {"seed", "robot", "targets", "env", "hardware", "train", "eval", "export", "report", "tune"}
# the loader checks every section against the robot and the OS when params are read: it computes
# nothing a stage writes, so the sections it reads are not the stage's params
LOADER = ROOT / "rlcore" / "pipeline" / "params.py"
PARAMS_NAMES = {"params", "trial_params"}  # the names a Params object goes by in rlcore and stages/


def closure(script: Path) -> set[Path]:
    """The script and every rlcore file it can import, transitively (parent packages included)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            parts = name.split(".")
            todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
    return seen


def sections_read(path: Path) -> set[str]:
    """Params sections the file reads: `params.<section>` / `trial_params.<section>`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in SECTIONS
            and isinstance(node.value, ast.Name)
            and node.value.id in PARAMS_NAMES
        ):
            found.add(node.attr)
    return found


def dep_paths(stage: str) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in DVC[stage].get("deps", [])]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(DVC))
def test_deps_cover_the_import_closure_and_robot_files(stage):
    script = ROOT / "stages" / f"{stage}.py"
    assert DVC[stage]["cmd"] == f"python stages/{stage}.py"
    files = closure(script)
    deps = dep_paths(stage)
    missing = sorted(p.relative_to(ROOT).as_posix() for p in files if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} misses deps: {missing}"
    if any("robots" in p.parts for p in files):  # the URDFs are read, not imported
        assert "rlcore/robots" in deps, f"{stage}: robot files missing"
    for dep in deps:  # and nothing listed that does not exist
        assert (ROOT / dep).exists() or dep.startswith(("data/", "out/", "models/")), dep


@pytest.mark.parametrize("stage", sorted(DVC))
def test_params_cover_every_section_the_code_reads(stage):
    files = closure(ROOT / "stages" / f"{stage}.py") - {LOADER}
    read = set().union(*(sections_read(p) for p in files))
    declared = {key.split(".")[0] for key in DVC[stage].get("params", [])}  # env.physics declares env in part
    assert read <= declared, f"dvc.yaml stage {stage!r} reads params sections {sorted(read - declared)}"


def test_closure_sees_imports_inside_functions():
    """The checker itself: rlcore.pipeline.evaluate imports the batched twin only inside a function."""
    assert ROOT / "rlcore" / "envs" / "batched.py" in closure(ROOT / "rlcore" / "pipeline" / "evaluate.py")
    assert "tune" not in sections_read(ROOT / "rlcore" / "pipeline" / "train.py")
    assert {"train", "env"} <= sections_read(ROOT / "rlcore" / "pipeline" / "train.py")


def test_dvcignore_excludes_bytecode():
    lines = (ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in lines


def test_touching_a_file_in_the_closure_changes_the_stage(tmp_path):
    """After a repro, editing a module train imports (and that the old deps left out), the
    tracking code or a robot file marks train as changed."""
    repo = copy_repo(tmp_path)
    dvc(repo, "repro", "train")
    assert "train" not in json.loads(dvc(repo, "status", "--json", "train").stdout or "{}")
    for touched in ("rlcore/robots/kinematics.py", "rlcore/tracking/runs.py", "rlcore/robots/fanuc_lrmate200id.urdf"):
        original = (repo / touched).read_bytes()
        with (repo / touched).open("a") as f:
            f.write("\n<!-- touched -->\n" if touched.endswith(".urdf") else "\n# touched\n")
        changed = json.loads(dvc(repo, "status", "--json", "train").stdout)
        assert "train" in changed, (touched, changed)
        (repo / touched).write_bytes(original)
