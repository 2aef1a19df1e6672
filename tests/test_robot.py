"""The URDF chain reader and batched FK against PyBullet's own joint info and link positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore.robots import read_chain, resolve_urdf
from rlcore.robots.arm import BulletArm
from rlcore.robots.kinematics import ForwardKinematics

ARMS = [
    ("fanuc_lrmate200id", "flange"),
    ("kuka_iiwa/model.urdf", None),
    ("franka_panda/panda.urdf", None),
]


@pytest.mark.parametrize(("urdf", "ee"), ARMS)
def test_chain_matches_pybullet_joint_info(urdf, ee):
    chain = read_chain(urdf, ee)
    arm = BulletArm(chain)
    try:
        assert len(arm.joint_ids) == chain.dof >= 6
        for joint, jid in zip(chain.movable, arm.joint_ids):
            info = arm.client.getJointInfo(arm.robot, jid)
            assert info[1].decode() == joint.name
            assert info[8] == pytest.approx(joint.lower)
            assert info[9] == pytest.approx(joint.upper)
            assert info[11] == pytest.approx(joint.velocity)
            axis = np.array(joint.axis) / np.linalg.norm(joint.axis)
            assert np.allclose(info[13], axis, atol=1e-6)
    finally:
        arm.close()


@pytest.mark.parametrize(("urdf", "ee"), ARMS)
def test_fk_matches_pybullet_link_positions(urdf, ee):
    """Every chain link's frame and the end effector through ee_position, 10,000 random
    configurations, within 1e-5 m (float32 FK)."""
    chain = read_chain(urdf, ee)
    arm = BulletArm(chain)
    rng = np.random.default_rng(0)
    q = rng.uniform(arm.lower, arm.upper, size=(10_000, chain.dof))
    expected = np.empty((len(q), len(chain.links), 3))
    for i, qi in enumerate(q):
        arm.set_joints(qi)
        expected[i] = arm.link_positions()
    arm.close()
    fk = ForwardKinematics(chain)
    got, _ = fk.link_poses(torch.tensor(q, dtype=torch.float32))
    err = np.abs(got.numpy().astype(np.float64) - expected).max()
    assert err < 1e-5, f"worst FK error {err:.2e} m"
    # the env's hot path (ee_position, not link_poses) against PyBullet's end-effector frame
    ee = fk.ee_position(torch.tensor(q, dtype=torch.float32)).numpy().astype(np.float64)
    err = np.abs(ee - expected[:, -1]).max()
    assert err < 1e-5, f"worst ee_position error {err:.2e} m"


def test_fanuc_geometry_and_zero_pose():
    chain = read_chain("fanuc_lrmate200id", "flange")
    assert chain.dof == 6 and chain.ee_link == "flange"
    assert read_chain("fanuc_lrmate200id").ee_link == "flange"  # default: the bundled robot's own
    assert read_chain("kuka_iiwa/model.urdf").ee_link == "lbr_iiwa_link_7"  # others: the chain's last link
    arm = BulletArm(chain, self_collision=True)
    assert arm.touching_at_rest == []  # nothing left out of the FANUC's self-collision check
    arm.set_joints(np.zeros(6))
    assert np.allclose(arm.ee_position(fk=True), [0.465, 0.0, 0.695], atol=1e-6)
    assert not arm.in_self_collision()
    # PyBullet gives a link without <inertial> 1 kg: every link here has a real one
    masses = [arm.client.getDynamicsInfo(arm.robot, i)[0] for i in range(arm.client.getNumJoints(arm.robot))]
    assert all(m < 5.0 for m in masses)
    assert masses[-1] < 0.01  # tool0 is a tiny frame
    arm.close()


def test_resolve_urdf_errors():
    assert resolve_urdf("fanuc_lrmate200id").name == "fanuc_lrmate200id.urdf"
    with pytest.raises(FileNotFoundError, match="no such bundled robot"):
        resolve_urdf("no_such_robot")
    with pytest.raises(ValueError, match="no such link"):
        read_chain("fanuc_lrmate200id", "hand")


@pytest.mark.parametrize("urdf", ["kuka_iiwa/model.urdf", "franka_panda/panda.urdf", "xarm/xarm6_robot.urdf"])
def test_another_robot_by_robot_urdf_alone(tmp_path, urdf):
    """targets -> hardware -> train -> evaluate with params.yaml's robot.urdf the only change."""
    import json

    from tests.helpers import TINY_PARAMS, copy_repo, stage

    repo = copy_repo(tmp_path, {**TINY_PARAMS, "robot": {"urdf": urdf}}, git=False)
    for name in ("targets", "hardware", "train", "evaluate"):
        stage(name, repo)
    evaluation = json.loads((repo / "out" / "eval.json").read_text())
    assert evaluation["episodes"] == 8
    assert (repo / "out" / "eval.gif").stat().st_size > 0


def test_unknown_ee_link_lists_the_chain(tmp_path):
    from tests.helpers import copy_repo, stage

    repo = copy_repo(tmp_path, {"robot": {"urdf": "kuka_iiwa/model.urdf", "ee_link": "flange"}}, git=False)
    proc = stage("targets", repo, check=False)
    lines = proc.stderr.strip().splitlines()  # PyBullet's build banner may come first
    assert proc.returncode == 2 and len(lines) <= 2 and "Traceback" not in proc.stderr
    assert "robot.ee_link = 'flange'" in lines[-1] and "lbr_iiwa_link_7" in lines[-1]
    assert not (repo / "data").exists()
