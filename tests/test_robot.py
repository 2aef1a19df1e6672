"""The URDF chain reader and batched FK against PyBullet's own joint info and link positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore.kinematics import ForwardKinematics
from rlcore.robots import read_chain, resolve_urdf
from rlcore.robots.arm import BulletArm

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
    """Every chain link's frame, 10,000 random configurations, within 1e-5 m (float32 FK)."""
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


def test_fanuc_geometry_and_zero_pose():
    chain = read_chain("fanuc_lrmate200id", "flange")
    assert chain.dof == 6 and chain.ee_link == "flange"
    assert read_chain("fanuc_lrmate200id").ee_link == "tool0"  # default: last link of the chain
    arm = BulletArm(chain, self_collision=True)
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
