"""The workcell (env.workcell): obstacles in params, the engines' contacts, the twin's collision
model against PyBullet's verdicts, a straight path through the pillar in all three, the target
cache's obstacle filter, episodes that end on contact, collision-aware metrics and the export's
workcell metadata."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml

from rlcore.bench.workcell import near_configurations
from rlcore.config.schema import ConfigError, Params
from rlcore.config.workcell import PRESETS, WorkcellError, cell_of, resolve
from rlcore.robots.chain import chain_of
from rlcore.robots.collision import MARGIN, ArmCollision
from rlcore.robots.mujoco_arm import MujocoArm  # headless GL first (see tests/test_gallery.py)

CELL = {"env": {"workcell": "fanuc_cell"}}


def cell_params(**sections) -> Params:
    return Params.model_validate({**CELL, **sections, "env": {**CELL["env"], **sections.get("env", {})}})


# -- params -------------------------------------------------------------------------------------------------
def test_workcell_values_resolve_to_obstacles(tmp_path):
    assert not resolve(None) and resolve("none").id == "none"
    preset = resolve("fanuc_cell")
    assert [o.name for o in preset.obstacles] == ["table", "pillar", "fence"]
    assert preset.id.startswith("fanuc_cell@") and len(preset.id) == len("fanuc_cell@") + 8
    listed = resolve(PRESETS["fanuc_cell"])
    assert listed.obstacles == preset.obstacles and listed.id != preset.id  # same obstacles, named "custom"
    path = tmp_path / "cell.yaml"
    path.write_text(yaml.safe_dump({"obstacles": [{"shape": "sphere", "position": [0.5, 0, 0.3], "radius": 0.1}]}))
    from_file = resolve(str(path))
    assert from_file.name == "cell" and from_file.obstacles[0].radius == 0.1
    moved = resolve([{"shape": "sphere", "position": [0.5, 0, 0.31], "radius": 0.1}])
    assert moved.id.split("@")[1] != from_file.id.split("@")[1]  # the hash follows the content


@pytest.mark.parametrize(
    "value, words",
    [
        ("fanuc_cel", "no such preset"),
        ("missing.yaml", "is missing"),
        ([{"shape": "box", "position": [0, 0, 0]}], "env.workcell[0]"),
        ([{"shape": "cone", "position": [0, 0, 0]}], "env.workcell[0].shape"),
        ([{"shape": "box", "position": [0, 0, 0], "size": [1, 0, 1]}], "must be positive"),
    ],
)
def test_a_broken_workcell_is_one_line_naming_it(tmp_path, value, words):
    with pytest.raises(WorkcellError, match=re.escape(words)):
        resolve(value)
    from rlcore.pipeline.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"env": {"workcell": value}}))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert "env.workcell" in str(err.value) and words.split("[")[0] in str(err.value)
    assert "\n" not in str(err.value)


# -- the twin's collision model against the engines ---------------------------------------------------------
@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_twin_verdicts_agree_with_the_engine_near_obstacles(engine):
    params = cell_params()
    chain = chain_of(params.robot)
    if engine == "pybullet":
        from rlcore.robots.arm import BulletArm

        arm = BulletArm(chain)
        arm.add_obstacles(cell_of(params.env))
    else:
        arm = MujocoArm(chain, cell=cell_of(params.env))
    qs, engine_d = near_configurations(arm, 3000)
    twin = ArmCollision(chain, cell_of(params.env))
    verdict = twin.contact(torch.tensor(qs, dtype=torch.float32)).numpy()
    touching = engine_d < 0
    agreement = float(np.mean(verdict == touching))
    assert 0.2 < touching.mean() < 0.9  # a population with both verdicts, not a trivial one
    assert agreement >= 0.99, f"twin vs {engine}: {agreement:.2%} agree (margin {MARGIN * 1000:g} mm)"
    # the dense path (GPUs: every point, no culling) gives the CPU's verdicts
    twin.cull = False
    assert np.array_equal(twin.contact(torch.tensor(qs, dtype=torch.float32)).numpy(), verdict)


def test_obstacle_distance_is_a_distance():
    """The twin's clearance follows PyBullet's within a few millimetres where the arm is clear."""
    params = cell_params()
    chain = chain_of(params.robot)
    from rlcore.robots.arm import BulletArm

    arm = BulletArm(chain)
    arm.add_obstacles(cell_of(params.env))
    qs, engine_d = near_configurations(arm, 300, within=0.1, seed=1)
    clear = engine_d > 0
    twin_d = ArmCollision(chain, cell_of(params.env)).clearance(torch.tensor(qs, dtype=torch.float32)).numpy()
    assert np.percentile(np.abs(twin_d[clear] - engine_d[clear]), 95) < 0.004


# -- a straight path through the pillar ---------------------------------------------------------------------
BEHIND_PILLAR = np.array([0.36, 0.40, 0.57])  # from home (flange at 0.465, 0, 0.695) the straight path crosses it


def straight_run(env, target: np.ndarray) -> tuple[int | None, float, np.ndarray]:
    """The damped-least-squares controller (a straight flange path) from home to `target` in a
    gymnasium reach env: (the step it touched an obstacle or None, final distance, final joints)."""
    from rlcore.policy.reference import DlsController

    dls = DlsController.from_chain(env.arm.chain, env.cfg.control_hz, 0.02, env.cfg.action_power)
    env.reset(seed=0, options={"target": target})
    dls.reset(env.q_cmd)
    for t in range(env.cfg.episode_steps):
        _, _, terminated, _, info = env.step(dls.act(env.target))
        if terminated:
            assert info["collision"] and not info["is_success"]
            return t + 1, info["distance"], env.arm.joint_state()[0]
    return None, info["distance"], env.arm.joint_state()[0]


def test_a_straight_path_through_the_pillar_is_a_collision_in_all_three():
    from rlcore.envs.batched import BatchedReachEnv
    from rlcore.envs.engines import make_reach_env
    from rlcore.policy.reference import DlsController

    free = Params.model_validate({"env": {"reset_noise": 0.0, "physics": "pybullet"}})
    env = make_reach_env(free, mode="eval")
    hit, distance, q_end = straight_run(env, BEHIND_PILLAR)
    env.close()
    assert hit is None and distance < 0.001  # in free space the target is reached ...
    params = cell_params(env={"reset_noise": 0.0})
    chain = chain_of(params.robot)
    assert not ArmCollision(chain, cell_of(params.env)).contact(torch.tensor(q_end[None], dtype=torch.float32))[0]
    steps = {}
    for engine in ("pybullet", "mujoco"):  # ... and in the cell the straight path hits the pillar
        env = make_reach_env(
            params.model_copy(update={"env": params.env.model_copy(update={"physics": engine})}), mode="eval"
        )
        steps[engine], _, _ = straight_run(env, BEHIND_PILLAR)
        env.close()
    twin = BatchedReachEnv(params.env, params.robot, None, 1, mode="eval")
    twin.reset(torch.tensor(BEHIND_PILLAR[None], dtype=torch.float32))
    dls = DlsController.from_chain(chain, params.env.control_hz, 0.02, params.env.action_power)
    dls.reset(twin.q_cmd[0].numpy().astype(np.float64))
    steps["twin"] = None
    for t in range(params.env.episode_steps):
        res = twin.step(torch.tensor(dls.act(BEHIND_PILLAR)[None], dtype=torch.float32))
        if res.terminated[0]:
            assert res.done[0] and not res.success[0]
            steps["twin"] = t + 1
            break
    assert None not in steps.values(), steps
    assert max(steps.values()) - min(steps.values()) <= 2, steps  # the same moment, give or take a step


# -- the target cache ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cell_cache():
    from rlcore.envs.target_build import build_cache

    return build_cache(cell_params(targets={"n": 400}))


def test_the_cache_holds_no_target_inside_an_obstacle(cell_cache):
    from rlcore.robots.arm import BulletArm
    from rlcore.robots.collision import ObstacleField

    params = cell_params(targets={"n": 400})
    chain = chain_of(params.robot)
    arm = BulletArm(chain)
    arm.add_obstacles(cell_of(params.env))
    for q in cell_cache.joints:  # the engine: every configuration clear
        arm.set_joints(q)
        assert not arm.touches_obstacle()
    twin = ArmCollision(chain, cell_of(params.env))  # the twin too, so training can reach every target
    assert not twin.contact(torch.tensor(cell_cache.joints)).any()
    flange = ObstacleField(cell_of(params.env)).distance(torch.tensor(cell_cache.positions).T.unsqueeze(0))[0]
    assert (flange > 0).all()
    dropped = cell_cache.meta["dropped_by_obstacles"]
    assert len(dropped) == cell_cache.n_levels and sum(dropped) > 0  # the cell took some, counted per level
    assert cell_cache.meta["workcell"] == cell_of(params.env).id


def test_a_cache_for_another_workcell_is_stale(cell_cache, tmp_path):
    from rlcore.envs.targets import TargetCache, TargetCacheError

    path = tmp_path / "targets.npz"
    cell_cache.save(path)
    TargetCache.load(path, cell_params(targets={"n": 400}))
    for other in (None, [{"shape": "sphere", "position": [0.5, 0.0, 0.3], "radius": 0.05}]):
        with pytest.raises(TargetCacheError, match="workcell differs"):
            TargetCache.load(path, Params.model_validate({"targets": {"n": 400}, "env": {"workcell": other}}))


def test_a_home_pose_inside_an_obstacle_stops_the_targets_stage():
    from rlcore.envs.target_build import build_cache
    from rlcore.envs.targets import TargetCacheError

    around_flange = [{"name": "box", "shape": "box", "position": [0.465, 0.0, 0.695], "size": [0.1, 0.1, 0.1]}]
    with pytest.raises(TargetCacheError, match="home pose touches an obstacle"):
        build_cache(Params.model_validate({"targets": {"n": 100}, "env": {"workcell": around_flange}}))


# -- episodes that end on contact ---------------------------------------------------------------------------
def test_the_twin_ends_only_the_env_that_touches(cell_cache):
    from rlcore.envs.batched import BatchedReachEnv

    params = cell_params(env={"reset_noise": 0.0, "reward": {"clearance": 0.0}})  # the collision's cost alone
    free = Params.model_validate({"env": {"reset_noise": 0.0}})
    cell = BatchedReachEnv(params.env, params.robot, cell_cache, 2, mode="eval")
    open_space = BatchedReachEnv(free.env, free.robot, cell_cache, 2, mode="eval")
    targets = torch.tensor(cell_cache.positions[:2])
    cell.reset(targets)
    open_space.reset(targets)
    swing = torch.tensor([[1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 0]])  # J1: env 0 into the pillar, env 1 away
    ran = 0
    while ran < params.env.episode_steps:
        res, ref = cell.step(swing), open_space.step(swing)
        ran += 1
        if res.any_done:
            break
    assert res.terminated.tolist() == [True, False] and res.done.tolist() == [True, False]
    assert not res.success[0] and ran < params.env.episode_steps
    assert torch.isclose(res.reward[0], ref.reward[0] - params.env.reward.collision)  # the penalty, once
    assert torch.isclose(res.reward[1], ref.reward[1])
    assert cell.t_env.tolist() == [0, ran]  # env 0 starts again, env 1 runs on
    assert torch.equal(res.final_obs[1], res.obs[1]) and not torch.equal(res.final_obs[0], res.obs[0])


def test_an_engine_episode_ends_on_contact_and_counts_as_a_failure():
    from rlcore.envs.engines import make_reach_env

    params = cell_params(env={"reset_noise": 0.0, "physics": "pybullet"})
    env = make_reach_env(params, mode="eval")
    env.reset(seed=0, options={"target": BEHIND_PILLAR})
    for _ in range(params.env.episode_steps):
        _, reward, terminated, truncated, info = env.step(np.array([1.0, 0, 0, 0, 0, 0], dtype=np.float32))
        if terminated or truncated:
            break
    env.close()
    assert terminated and not truncated and info["collision"] and not info["is_success"]
    assert reward < -params.env.reward.collision + 2.5  # the penalty on top of a step's reward (at most +2)


def test_summaries_count_collisions_as_failures():
    from rlcore.evaluation.metrics import summarise

    row = {"level": 0, "action_change": 0.0, "peak_speed_fraction": 0.5, "limit_margin": 0.1, "path_ratio": 1.0}
    reach = {"reach_5mm": 3, "settle_5mm": 3}
    rows = [
        {**row, **reach, "final_distance_mm": 0.5, "within_5mm": 1, "collision": 0},
        {**row, **reach, "final_distance_mm": 0.5, "within_5mm": 0, "collision": 1},  # touched on its way
        {**row, "reach_5mm": "", "settle_5mm": "", "final_distance_mm": 90.0, "within_5mm": 0, "collision": 0},
        {**row, **reach, "final_distance_mm": 1.0, "within_5mm": 1, "collision": 0},
    ]
    out = summarise(rows, [0.005], 0.02, 1)
    assert out["success_rate"] == 0.5 and out["within_5mm"] == 0.5 and out["collision_rate"] == 0.25
    assert out["success_rate_level0"] == 0.5
    free = [{k: v for k, v in r.items() if k != "collision"} for r in rows]
    assert "collision_rate" not in summarise(free, [0.005], 0.02, 1)


# -- the export carries the workcell ------------------------------------------------------------------------
def test_the_onnx_model_names_its_workcell_and_the_controller_refuses_another(tmp_path):
    import onnx

    from rlcore.policy import onnx_export as export
    from rlcore.policy.controller import Controller, WorkcellMismatch
    from tests.test_export import random_bundle

    params = cell_params()
    cell = cell_of(params.env)
    bundle = random_bundle(params)
    assert bundle["workcell"]["id"] == cell.id  # recorded when the policy is made
    path = tmp_path / "policy.onnx"
    export.export_onnx(bundle, chain_of(params.robot), params.env.control_hz, path, "torchscript")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["rlcore.workcell"] == cell.id
    assert [o["name"] for o in json.loads(meta["rlcore.workcell_obstacles"])] == ["table", "pillar", "fence"]
    assert Controller(path, workcell=cell.id).workcell == cell.id
    with pytest.raises(WorkcellMismatch, match=f"pass workcell='{cell.id}'") as err:
        Controller(path)  # free space: not what it was trained for
    assert "table, pillar, fence" in str(err.value)
    with pytest.raises(WorkcellMismatch):
        Controller(path, workcell="fanuc_cell@00000000")  # the same name, other obstacles
    assert Controller(path, other_workcell_ok=True).workcell == cell.id  # told otherwise
    free = tmp_path / "free.onnx"
    export.export_onnx(random_bundle(Params()), chain_of(params.robot), 30, free, "torchscript")
    Controller(free)
    with pytest.raises(WorkcellMismatch, match="free space"):
        Controller(free, workcell=cell.id)


def test_the_physics_backend_reports_terminated_episodes(cell_cache):
    """PyBullet envs behind the trainer's tensor API: the env that touches ends alone, flagged
    terminated (so the trainer does not bootstrap it), the other runs on."""
    from rlcore.envs.shared_vec import make_physics_vec_env

    params = cell_params(env={"reset_noise": 0.0, "physics": "pybullet"}, targets={"n": 400})
    params = params.model_copy(update={"train": params.train.model_copy(update={"vec_env": "dummy"})})
    venv = make_physics_vec_env(params, cell_cache, 2, torch.device("cpu"))
    venv.reset()
    swing = torch.tensor([[1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 0]])
    for _ in range(params.env.episode_steps):
        res = venv.step(swing)
        if res.any_done:
            break
    venv.close()
    assert res.terminated is not None and res.terminated.tolist() == [True, False]
    assert res.done.tolist() == [True, False] and not res.success[0]
