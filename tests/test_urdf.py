"""Your own arm: the end effector found as an engineer would, held joints, `package://` meshes
found as ROS finds them, vendor namespaces ignored, and a table of broken URDFs that each end in
one line naming the cause."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from rlcore.robots.chain import UrdfError, chain_of, check_home, default_home, read_chain
from rlcore.robots.meshes import engine_copy, resolve_mesh
from tests.helpers import ROOT, child_env

BOX = '<collision><geometry><box size="0.04 0.04 0.04"/></geometry></collision>'


def link(name: str, mesh: str | None = None) -> str:
    geometry = f'<mesh filename="{mesh}"/>' if mesh else '<box size="0.04 0.04 0.04"/>'
    inertia = '<inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/>'
    inertial = f'<inertial><mass value="1"/>{inertia}</inertial>'
    return f'<link name="{name}">{inertial}<collision><geometry>{geometry}</geometry></collision></link>'


def joint(name: str, parent: str, child: str, kind: str = "revolute", z: float = 0.2, extra: str = "", **limit) -> str:
    lim = {"lower": -2.0, "upper": 2.0, "velocity": 2.0, "effort": 50.0} | limit
    limit_el = "" if kind == "fixed" else "<limit " + " ".join(f'{k}="{v}"' for k, v in lim.items()) + "/>"
    return (
        f'<joint name="{name}" type="{kind}" {extra}><parent link="{parent}"/><child link="{child}"/>'
        f'<origin xyz="0 0 {z}" rpy="0 0 0"/><axis xyz="0 1 0"/>{limit_el}</joint>'
    )


def urdf(tmp: Path, name: str, body: list[str], head: str = "") -> Path:
    path = tmp / f"{name}.urdf"
    path.write_text(f'<?xml version="1.0"?>\n<robot name="{name}" {head}>\n' + "\n".join(body) + "\n</robot>\n")
    return path


def arm3(tmp: Path, name: str = "arm3", tool: str | None = "tool0", **limit) -> Path:
    """A three-joint arm (base, l1..l3), a tool frame on a fixed joint and a gripper jaw after it."""
    body = [link(n) for n in ("base", "l1", "l2", "l3", "jaw")]
    body += [joint("j1", "base", "l1", **limit), joint("j2", "l1", "l2", **limit), joint("j3", "l2", "l3", **limit)]
    if tool:
        body += [link(tool), joint("tool_fixed", "l3", tool, "fixed", z=0.05)]
    body += [joint("gripper_joint", "l3", "jaw", lower=-0.5, upper=0.0)]
    return urdf(tmp, name, body)


def test_a_tool_frame_is_the_end_effector_and_the_gripper_is_held(tmp_path):
    chain = read_chain(arm3(tmp_path))
    assert (chain.ee_link, chain.dof) == ("tool0", 3) and "tool-frame" in chain.ee_reason
    assert [j.name for j in chain.held] == ["gripper_joint"] and chain.held_positions == (0.0,)
    # no tool frame: the end of the longest revolute chain, the gripper joint not counted
    bare = read_chain(arm3(tmp_path, "bare", tool=None))
    assert (bare.ee_link, bare.dof) == ("l3", 3) and "longest chain" in bare.ee_reason
    # robot.held moves a held joint, inside its limits only
    robot = type("Robot", (), {"urdf": str(arm3(tmp_path)), "ee_link": None, "held": {"gripper_joint": -0.25}})
    assert chain_of(robot).held_positions == (-0.25,)
    robot.held = {"gripper_joint": 1.0}
    with pytest.raises(UrdfError, match=r"robot.held.gripper_joint = 1.0: outside its limits"):
        chain_of(robot)
    robot.held = {"j1": 0.0}
    with pytest.raises(UrdfError, match=r"robot.held.j1: not a held joint"):
        chain_of(robot)


def test_continuous_joints_keep_their_range_and_home_avoids_excluded_zero(tmp_path):
    body = [link(n) for n in ("base", "l1", "l2")]
    body += [joint("j1", "base", "l1", "continuous"), joint("j2", "l1", "l2", lower=0.8, upper=5.4)]
    chain = read_chain(urdf(tmp_path, "cont", body))
    assert (chain.movable[0].lower, chain.movable[0].upper) == (-2.0, 2.0)  # the stated <limit>
    body[-2] = joint("j1", "base", "l1", "continuous").replace("<limit ", "<nolimit ")
    chain = read_chain(urdf(tmp_path, "cont2", body))
    assert chain.movable[0].upper == pytest.approx(2 * math.pi) and chain.movable[0].continuous
    assert default_home(chain).tolist() == pytest.approx([0.0, 3.1])  # zero is outside j2: mid-range
    robot = type("Robot", (), {"urdf": str(chain.urdf_path), "ee_link": None, "home": [0.0, 0.0]})
    with pytest.raises(UrdfError, match=r"robot.home: j2 0 not in \[0.8, 5.4\]; for example robot.home=\[0.0, 3.1\]"):
        check_home(robot, chain)


def test_package_meshes_resolve_through_ancestors_and_ros_package_path(tmp_path, monkeypatch):
    pkg = tmp_path / "ws" / "my_arm_description"
    (pkg / "meshes").mkdir(parents=True)
    (pkg / "urdf").mkdir()
    (pkg / "meshes" / "l1.stl").write_bytes(b"solid x\nendsolid x\n")
    path = urdf(pkg / "urdf", "arm", [link("base"), link("l1", "package://my_arm_description/meshes/l1.stl")])
    assert resolve_mesh("package://my_arm_description/meshes/l1.stl", path) == (pkg / "meshes/l1.stl").resolve()
    # a package named by its package.xml, found through ROS_PACKAGE_PATH from a URDF elsewhere
    other = tmp_path / "elsewhere" / "src" / "vendor_pkg"
    (other / "meshes").mkdir(parents=True)
    (other / "package.xml").write_text("<package><name>vendor_description</name></package>")
    (other / "meshes" / "m.stl").write_bytes(b"solid x\nendsolid x\n")
    lone = urdf(tmp_path, "lone", [link("base")])
    with pytest.raises(UrdfError, match=r"mesh package://vendor_description/meshes/m.stl not found"):
        resolve_mesh("package://vendor_description/meshes/m.stl", lone)
    monkeypatch.setenv("ROS_PACKAGE_PATH", str(tmp_path / "elsewhere" / "src"))
    assert resolve_mesh("package://vendor_description/meshes/m.stl", lone) == (other / "meshes/m.stl").resolve()
    # the engines' copy names every mesh by its absolute path
    copy = engine_copy(path)
    assert f'filename="{(pkg / "meshes/l1.stl").resolve().as_posix()}"' in copy.read_text()


def test_vendor_namespaced_attributes_and_unknown_tags_are_ignored(tmp_path):
    body = [link(n) for n in ("base", "l1", "l2")]
    body += [joint("j1", "base", "l1", extra='drake:acceleration="5"'), joint("j2", "l1", "l2")]
    body += ['<drake:collision_filter_group name="g"><drake:member link="l1"/></drake:collision_filter_group>']
    body += ['<gazebo reference="l1"><material>Gazebo/Grey</material></gazebo>']
    chain = read_chain(urdf(tmp_path, "ns", body))
    assert chain.dof == 2 and chain.ee_link == "l2"


BROKEN = {
    # case: (urdf maker, extra --set overrides, what the one line must say)
    "no movable joint": (
        lambda t: urdf(t, "rigid", [link("base"), link("l1"), joint("j", "base", "l1", "fixed")]),
        [],
        "no revolute joint to drive",
    ),
    "branches, no tool frame": (
        lambda t: urdf(
            t,
            "fork",
            [link(n) for n in ("base", "a1", "a2", "b1", "b2")]
            + [joint("ja1", "base", "a1"), joint("ja2", "a1", "a2"), joint("jb1", "base", "b1")]
            + [joint("jb2", "b1", "b2")],
        ),
        [],
        "branches into 2 chains of 2 revolute joints",
    ),
    "missing mesh": (
        lambda t: urdf(
            t, "nomesh", [link("base"), link("l1", "package://nowhere_pkg/l1.stl"), joint("j", "base", "l1")]
        ),
        [],
        "mesh package://nowhere_pkg/l1.stl not found",
    ),
    "home outside the limits": (lambda t: arm3(t), ["robot.home=[0.0,3.0,0.0]"], "robot.home: j2 3 not in [-2, 2]"),
    "too slow for the episode": (lambda t: arm3(t, velocity=0.05), [], "too slow for env.episode_steps = 60"),
    "an unknown ee_link": (lambda t: arm3(t), ["robot.ee_link=gripper"], "robot.ee_link = 'gripper': no such link"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_urdf_ends_in_one_line(tmp_path, case):
    make, sets, said = BROKEN[case]
    path = make(tmp_path)
    args = ["--set", f"robot.urdf={path}", "--set", "targets.n=300", "--set", f"targets.path={tmp_path / 't.npz'}"]
    args += [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/targets.py"), "--params", str(ROOT / "params.yaml"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and said in errors[0], errors
    assert not (tmp_path / "t.npz").exists()  # nothing half-written


def test_a_held_joint_sits_at_its_position_in_both_engines(tmp_path):
    pytest.importorskip("pybullet")
    pytest.importorskip("rlcore.robots.mujoco_arm")  # not bare mujoco: this sets headless GL first
    import numpy as np

    from rlcore.robots.arm import BulletArm
    from rlcore.robots.mujoco_arm import MujocoArm, mujoco

    robot = type("Robot", (), {"urdf": str(arm3(tmp_path)), "ee_link": None, "held": {"gripper_joint": -0.4}})
    chain = chain_of(robot)
    bullet, mj = BulletArm(chain), MujocoArm(chain)
    q = np.array([0.3, -0.5, 0.7])
    bullet.set_joints(q)
    mj.set_joints(q)
    jaw = bullet.held_ids[0]
    assert bullet.client.getJointState(bullet.robot, jaw)[0] == pytest.approx(-0.4)
    frame = bullet.client.getLinkState(bullet.robot, jaw, computeForwardKinematics=True)
    mujoco.mj_kinematics(mj.model, mj.data)
    body = mj.model.body("jaw").id
    # the jaw's frame, turned by the held angle, is where PyBullet has it (its orientation shows the angle)
    assert np.allclose(frame[4], mj.data.xpos[body], atol=1e-6)
    quat_xyzw = np.array(frame[5])
    assert np.allclose(np.abs(quat_xyzw[[3, 0, 1, 2]] @ mj.data.xquat[body]), 1.0, atol=1e-6)
    bullet.close()
