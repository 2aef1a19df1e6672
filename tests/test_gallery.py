"""Five arms of example-robot-data by `robot.urdf` alone (a test dependency): each end effector
found as an engineer would, the same flange on PyBullet, MuJoCo and the twin, gymnasium's and
SB3's env checks, and `bench gallery` (targets -> training -> evaluation on both engines) reaching
its targets on every arm."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, child_env

pytest.importorskip("rlcore.robots.mujoco_arm")  # not bare mujoco: this sets headless GL first
pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from rlcore.bench.gallery import ARMS, arm_params, robots_dir  # noqa: E402
from rlcore.pipeline.params import load_params  # noqa: E402

# what an engineer would pick, and the joints that are not the arm's
EXPECTED = {
    "ur5": ("tool0", 6, []),
    "panda": ("panda_hand_tcp", 7, ["panda_finger_joint1", "panda_finger_joint2"]),
    "kinova": ("j2s6s200_end_effector", 6, []),
    "xarm7": ("link_eef", 7, []),
    "z1": ("gripperStator", 6, ["jointGripper"]),
}


@pytest.fixture(scope="module")
def robots():
    try:
        return robots_dir()
    except SystemExit as err:
        if "CI" in __import__("os").environ:
            pytest.fail(str(err))
        pytest.skip(str(err))


def params_for(name, robots, *sets):
    return arm_params(load_params(ROOT / "params.yaml", list(sets)), name, robots)


@pytest.mark.parametrize("name", list(ARMS))
def test_each_arm_loads_alike_on_both_engines_and_the_twin(name, robots):
    from rlcore.robots.arm import BulletArm
    from rlcore.robots.chain import chain_of
    from rlcore.robots.kinematics import ForwardKinematics
    from rlcore.robots.mujoco_arm import MujocoArm

    chain = chain_of(params_for(name, robots).robot)
    ee, dof, held = EXPECTED[name]
    assert (chain.ee_link, chain.dof, [j.name for j in chain.held]) == (ee, dof, held), chain.ee_reason
    bullet, mj = BulletArm(chain, self_collision=True), MujocoArm(chain, self_collision=True)
    fk = ForwardKinematics(chain, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for q in rng.uniform(bullet.lower, bullet.upper, (50, chain.dof)):
        bullet.set_joints(q)
        mj.set_joints(q)
        twin = fk.link_poses(torch.tensor(q)[None])[0][0, -1].numpy()
        flange = bullet.ee_position(fk=True)
        assert np.abs(flange - mj.ee_position(fk=True)).max() < 1e-5
        assert np.abs(flange - twin).max() < 1e-5
    bullet.close()


@pytest.mark.parametrize("name", list(ARMS))
@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_each_arm_passes_the_env_checkers(name, engine, robots):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from rlcore.envs.engines import make_reach_env
    from rlcore.envs.target_build import build_cache

    params = params_for(name, robots, f"env.physics={engine}", "targets.n=200")
    env = make_reach_env(params, build_cache(params), mode="eval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)  # determinism included: held fingers reset each episode
        sb3_check_env(env, warn=False)
    env.close()


@pytest.mark.slow
def test_the_gallery_trains_and_evaluates_every_arm_on_both_engines(tmp_path, robots):
    sets = ["targets.n=2000", "train.total_steps=500000", "eval.episodes=30"]
    cmd = [sys.executable, "-m", "rlcore.bench", "gallery", "--params", str(ROOT / "params.yaml"), "--no-progress"]
    cmd += [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gallery.json").read_text())
    assert [r["arm"] for r in result["arms"]] == list(ARMS)
    for row in result["arms"]:
        pybullet, mujoco = row["pybullet"], row["mujoco"]
        assert pybullet["episodes"] == mujoco["episodes"] == 30
        # learnt: the held-out targets are reached to a small fraction of their distance from home
        assert row["twin"]["final_distance_mm_median"] < 0.1 * row["home_distance_mm_median"], row
        assert pybullet["final_distance_mm_median"] < 0.1 * row["home_distance_mm_median"], row
        # the two engines see the same policy do the same thing
        gap = abs(pybullet["final_distance_mm_median"] - mujoco["final_distance_mm_median"])
        assert gap < max(3.0, 0.3 * pybullet["final_distance_mm_median"]), row
        assert pybullet["reference_success_rate"] is not None
    assert "twin mm (at home)" in proc.stdout and "reference (pybullet)" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ur5", "panda"])
def test_an_arm_runs_through_the_stages_by_robot_urdf_alone(tmp_path, robots, name):
    """The pipeline's own stages with only robot.urdf changed (tiny sizes): the targets stage says
    what it chose, evaluation runs on both engines with its GIF, and the ONNX export names the arm's
    joints only (the Panda's fingers are held, not exported)."""
    import copy

    from tests.helpers import TINY_PARAMS, copy_repo, stage

    params = copy.deepcopy(TINY_PARAMS) | {"robot": {"urdf": str(robots / ARMS[name][0])}}
    root = copy_repo(tmp_path, params, git=False)
    said = stage("targets", root).stdout
    ee, dof, held = EXPECTED[name]
    assert f"end effector {ee} (" in said and f"arm joints ({dof})" in said
    assert all(j in said.split("held joints")[1].splitlines()[0] for j in held)
    stage("hardware", root)
    stage("train", root)
    for engine in ("pybullet", "mujoco"):
        out = stage("evaluate", root, "--set", f"env.physics={engine}").stdout
        label = {"pybullet": "PyBullet", "mujoco": "MuJoCo"}[engine]
        assert f"held-out episodes, {label} accurate physics" in out, out[-1500:]
        assert (root / "out/eval.gif").stat().st_size > 1000
    stage("export", root)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(root / "models/policy.onnx")).metadata_props}
    names = json.loads(meta["rlcore.joint_names"])
    assert len(names) == dof and not set(names) & set(held), names
