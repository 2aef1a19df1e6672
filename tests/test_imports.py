"""The import contract, read from the code with ast (function-level imports included): stages
import rlcore and never the reverse; the simulation and learning core (envs, ppo, targets,
kinematics, robots) never reaches the pipeline's services (tracking, tuning, study, bench,
report, seeds); and no rlcore module imports itself through others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ROOT, imported_names, module_file

CORE = ["rlcore/envs", "rlcore/ppo", "rlcore/robots", "rlcore/targets.py", "rlcore/kinematics.py"]
SERVICES = [
    "rlcore/tracking.py",
    "rlcore/tuning.py",
    "rlcore/study.py",
    "rlcore/bench",
    "rlcore/report.py",
    "rlcore/seeds.py",
    "rlcore/model_registry.py",
]


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


@pytest.mark.parametrize(
    "path", [p for p in rlcore_files() if under(p, CORE)], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_core_never_reaches_the_services(path):
    bad = sorted(f.relative_to(ROOT).as_posix() for f in reachable(path) if under(f, SERVICES))
    assert not bad, f"{path.relative_to(ROOT)} imports (directly or through others) {bad}"


def test_rlcore_never_imports_stages():
    bad = [
        p.relative_to(ROOT).as_posix()
        for p in rlcore_files()
        if any(n.split(".")[0] == "stages" for n in imported_names(p))
    ]
    assert not bad


DEVICE_LAYER = ["rlcore/hardware.py", "rlcore/devices.py", "rlcore/placement.py", "rlcore/adam.py"]
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


def test_the_controller_stands_alone():
    """rlcore/deploy.py goes onto a controller PC with the ONNX file: no torch, no other rlcore module."""
    names = imported_names(ROOT / "rlcore" / "deploy.py")
    assert not [n for n in names if n.split(".")[0] in ("torch", "rlcore")], sorted(names)


def test_no_import_cycles():
    cycles = sorted({p.relative_to(ROOT).as_posix() for p in rlcore_files() if p in reachable(p)})
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_the_twin_trains_without_pybullet_or_sb3(tmp_path):
    """The batched twin, PPO and a target cache load where PyBullet and SB3 are not installed (a
    GPU box): a subprocess with both blocked trains a few updates."""
    import subprocess
    import sys

    from rlcore.config import Params
    from rlcore.targets import build_cache

    params = Params().model_copy(update={"targets": Params().targets.model_copy(update={"n": 300})})
    build_cache(params).save(tmp_path / "targets.npz")
    code = f"""
import sys
for blocked in ("pybullet", "pybullet_data", "pybullet_utils", "stable_baselines3"):
    sys.modules[blocked] = None
import torch
from rlcore import hardware as hw
from rlcore.config import Params
from rlcore.envs.batched import BatchedReachEnv
from rlcore.ppo.trainer import Trainer
from rlcore.targets import TargetCache
p = Params()
p = p.model_copy(update={{"targets": p.targets.model_copy(update={{"n": 300}}),
                         "train": p.train.model_copy(update={{"n_steps": 4, "actor_hidden": [16, 16]}})}})
targets = TargetCache.load({str(tmp_path / "targets.npz")!r}, p)
env = BatchedReachEnv(p, targets, 32, torch.device("cpu"))
trainer = Trainer(p, env, torch.device("cpu"), hw.capabilities(torch.device("cpu")), None, targets.n_levels)
print("steps", trainer.train(progress=False, total_steps=512)["steps"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "steps 512" in out.stdout
