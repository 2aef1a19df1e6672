"""The import contracts. The layers and forbidden imports are import-linter's contracts in
pyproject.toml (run here as `lint-imports`, and shown to fail on an upward import); the rest is
read from the code with ast, function-level imports included: stages import rlcore and never the
reverse, no cycles, import chains at most MAX_DEPTH modules long, nothing at the top of rlcore/
but packages and one helper, backend-specific calls only in the device layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, imported_names, module_file


def rlcore_files() -> list[Path]:
    return sorted((ROOT / "rlcore").rglob("*.py"))


def edges(path: Path) -> set[Path]:
    """The rlcore files a file imports by name (its own parent packages are not counted)."""
    return {f for name in imported_names(path) if (f := module_file(name)) and f != path}


def reachable(path: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for f in edges(todo.pop()):
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return seen


def under(path: Path, places: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == p or rel.startswith(p + "/") for p in places)


def test_rlcore_never_imports_stages():
    bad = [
        p.relative_to(ROOT).as_posix()
        for p in rlcore_files()
        if any(n.split(".")[0] == "stages" for n in imported_names(p))
    ]
    assert not bad


DEVICE_LAYER = ["rlcore/runtime/probes.py", "rlcore/runtime/devices.py", "rlcore/pipeline/placement.py"]
DEVICE_LAYER += ["rlcore/algos/ppo/adam.py"]
BACKEND_CALLS = ("torch.cuda", "torch.mps", "torch.backends.mps", "torch_directml", "torch.version.hip")


@pytest.mark.parametrize("folder", ["rlcore", "stages"])
def test_backend_specific_calls_stay_in_the_device_layer(folder):
    """CUDA, MPS, ROCm and DirectML calls live in the device layer, so every other module runs on
    whatever backend the user has."""
    bad = [
        f"{p.relative_to(ROOT).as_posix()}: {call}"
        for p in sorted((ROOT / folder).rglob("*.py"))
        if not under(p, DEVICE_LAYER)
        for call in BACKEND_CALLS
        if call in p.read_text()
    ]
    assert not bad, f"backend-specific calls outside {DEVICE_LAYER}: {bad}"


MAX_DEPTH = 10
TOP_LEVEL = {"__init__.py", "stats.py", "cli.py"}  # stats: the helper every layer may use; cli: `rlcore`


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


def test_import_linter_contracts_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_import_linter_fails_on_an_upward_import(tmp_path):
    """The contracts bite: the env layer importing the pipeline (one line) breaks the layers contract."""
    shutil.copytree(ROOT / "rlcore", tmp_path / "rlcore", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    task = tmp_path / "rlcore" / "envs" / "task.py"
    task.write_text(task.read_text() + "\n\ndef _upward():\n    from rlcore.pipeline import train  # noqa: F401\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert "rlcore.envs.task -> rlcore.pipeline.train" in out.stdout


def test_top_level_holds_packages_one_helper_and_the_command():
    loose = sorted(p.name for p in (ROOT / "rlcore").glob("*.py") if p.name not in TOP_LEVEL)
    assert not loose, f"modules at the top of rlcore/ (put each in the package of its concern): {loose}"


def longest_chain(path: Path, memo: dict[Path, list[Path]]) -> list[Path]:
    if path not in memo:
        memo[path] = [path]  # a cycle stops here (test_no_import_cycles names it)
        memo[path] = [path, *max((longest_chain(f, memo) for f in edges(path)), key=len, default=[])]
    return memo[path]


def test_import_chains_are_short():
    """The longest chain of imports inside rlcore (a package's __init__ counts when it imports)."""
    memo: dict[Path, list[Path]] = {}
    chain = max((longest_chain(p, memo) for p in rlcore_files()), key=len)
    names = " -> ".join(p.relative_to(ROOT).with_suffix("").as_posix() for p in chain)
    assert len(chain) <= MAX_DEPTH, f"{len(chain)} modules: {names}"


def test_no_import_cycles():
    cycles = sorted({p.relative_to(ROOT).as_posix() for p in rlcore_files() if p in reachable(p)})
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_the_twin_trains_without_pybullet_or_sb3(tmp_path):
    """The batched twin, PPO and a target cache load where PyBullet and SB3 are not installed (a
    GPU box): a subprocess with both blocked trains a few updates."""
    import subprocess
    import sys

    from rlcore.config.schema import Params
    from rlcore.envs.target_build import build_cache

    params = Params().model_copy(update={"targets": Params().targets.model_copy(update={"n": 300})})
    build_cache(params).save(tmp_path / "targets.npz")
    code = f"""
import sys
for blocked in ("pybullet", "pybullet_data", "pybullet_utils", "stable_baselines3"):
    sys.modules[blocked] = None
import torch
from rlcore.runtime import probes as hw
from rlcore.config.schema import Params
from rlcore.envs.batched import BatchedReachEnv
from rlcore.algos.ppo.trainer import Trainer
from rlcore.envs.targets import TargetCache
p = Params()
p = p.model_copy(update={{"targets": p.targets.model_copy(update={{"n": 300}}),
                         "train": p.train.model_copy(update={{"n_steps": 4, "actor_hidden": [16, 16]}})}})
targets = TargetCache.load({str(tmp_path / "targets.npz")!r}, p)
env = BatchedReachEnv(p.env, p.robot, targets, 32, torch.device("cpu"))
trainer = Trainer(p, env, torch.device("cpu"), hw.capabilities(torch.device("cpu")), None, targets.n_levels)
print("steps", trainer.train(progress=False, total_steps=512)["steps"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "steps 512" in out.stdout
