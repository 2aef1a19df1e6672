"""The reachable-target cache: reachability, collisions, splits, levels, staleness, curriculum."""

from __future__ import annotations

import numpy as np
import pytest

from rlcore.config.schema import Params
from rlcore.envs.targets import Curriculum, TargetCache, TargetCacheError
from rlcore.robots.arm import BulletArm


def test_every_target_is_reached_by_its_stored_joints(small_params, small_cache):
    arm = BulletArm(small_params.robot.urdf, small_params.robot.ee_link, self_collision=True)
    for q, pos in zip(small_cache.joints, small_cache.positions):
        assert np.all(q >= arm.lower - 1e-6) and np.all(q <= arm.upper + 1e-6)
        arm.set_joints(q)
        assert np.allclose(arm.ee_position(fk=True), pos, atol=1e-5)
        assert not arm.in_self_collision()
        assert pos[2] >= small_params.targets.min_height
        assert np.hypot(pos[0], pos[1]) >= small_params.targets.min_radius
    arm.close()


def test_splits_and_levels(small_params, small_cache):
    train = small_cache.indices("train")
    held = small_cache.indices("heldout")
    assert len(np.intersect1d(train, held)) == 0
    assert len(train) + len(held) == len(small_cache.positions)
    assert len(held) == round(small_params.targets.heldout_fraction * len(small_cache.positions))
    dist = np.linalg.norm(small_cache.positions - small_cache.home_position, axis=1)
    levels = range(small_cache.n_levels)
    assert small_cache.n_levels == small_params.targets.levels
    maxima = [dist[small_cache.level == lvl].max() for lvl in levels]
    minima = [dist[small_cache.level == lvl].min() for lvl in levels]
    assert all(maxima[k] <= minima[k + 1] for k in range(len(maxima) - 1))
    rng = np.random.default_rng(0)
    idx = small_cache.sample(500, rng, "train", max_level=0)
    assert set(small_cache.level[idx]) == {0}
    assert not small_cache.heldout[idx].any()


def test_reachability_query(small_cache):
    assert small_cache.is_position_reachable(small_cache.positions[:10], tol=1e-4).all()
    assert not small_cache.is_position_reachable(np.array([[3.0, 0.0, 0.5], [0.0, 0.0, -1.0]]), 0.01).any()


def test_jitter_stays_reachable(small_params, small_cache):
    arm = BulletArm(small_params.robot.urdf, small_params.robot.ee_link)

    def fk(qs):
        out = []
        for q in qs:
            arm.set_joints(np.clip(q, arm.lower, arm.upper))
            out.append(arm.ee_position(fk=True))
        return np.array(out)

    idx = np.arange(20)
    jittered = small_cache.jittered(idx, 0.05, np.random.default_rng(0), fk)
    moved = np.linalg.norm(jittered - small_cache.positions[idx], axis=1)
    assert 0 < moved.mean() < 0.1
    arm.close()


def test_save_load_roundtrip_and_errors(small_params, small_cache, tmp_path):
    loaded = TargetCache.load(small_params.targets.path, small_params)
    assert np.array_equal(loaded.positions, small_cache.positions)
    assert np.array_equal(loaded.heldout, small_cache.heldout)
    with pytest.raises(TargetCacheError, match="missing.*dvc repro targets"):
        TargetCache.load(tmp_path / "none.npz", small_params)
    other = Params.model_validate(
        {**small_params.model_dump(), "targets": {**small_params.targets.model_dump(), "n": 700}}
    )
    with pytest.raises(TargetCacheError, match="stale.*dvc repro targets"):
        TargetCache.load(small_params.targets.path, other)
    robot = Params.model_validate({**small_params.model_dump(), "robot": {"urdf": "kuka_iiwa/model.urdf"}})
    with pytest.raises(TargetCacheError, match="stale"):
        TargetCache.load(small_params.targets.path, robot)
    truncated = tmp_path / "truncated.npz"
    data = open(small_params.targets.path, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(TargetCacheError, match="unreadable.*dvc repro targets"):
        TargetCache.load(truncated, small_params)


def test_curriculum_advances_and_restores():
    cur = Curriculum(start_level=0, max_level=2, threshold=0.8, window=10)
    assert not cur.update([True] * 9)
    assert cur.update([True])  # window full, rate 1.0
    assert cur.level == 1
    assert not cur.update([True] * 5 + [False] * 5)  # 50% < 80%
    state = cur.state_dict()
    clone = Curriculum(0, 2, 0.8, 10)
    clone.load_state_dict(state)
    assert clone.level == 1 and clone.success_rate == pytest.approx(0.5)
    for _ in range(5):
        cur.update([True] * 10)
    assert cur.level == 2  # capped at max_level
