"""The reference controller (damped least squares) in the physics engine on held-out targets, the
evaluation's parallel workers against its serial loop, and the reference through the controller API."""

from __future__ import annotations

import numpy as np
import pytest

from rlcore.config.schema import Params
from rlcore.envs.target_build import build_cache
from rlcore.evaluation.rollout import evaluate_drivers, heldout_targets
from rlcore.policy.file import policy_from_bundle
from tests.test_export import random_bundle


@pytest.fixture(scope="module")
def params_2000(tmp_path_factory) -> Params:
    """2,000 targets: 200 held out."""
    path = tmp_path_factory.mktemp("data") / "targets.npz"
    return Params.model_validate({"targets": {"n": 2000, "path": str(path)}})


@pytest.fixture(scope="module")
def cache_2000(params_2000):
    cache = build_cache(params_2000)
    cache.save(params_2000.targets.path)
    return cache


def test_the_reference_ends_within_1mm_on_200_heldout_targets(params_2000, cache_2000):
    """The classical controller, with the policy's action interface and accurate physics: >= 99%
    of 200 held-out episodes end within 1 mm, and it reaches 2 cm within a third of an episode."""
    chosen = heldout_targets(cache_2000, None, seed=7)
    assert len(chosen) == 200
    rows = evaluate_drivers(["reference"], params_2000, cache_2000, chosen, seed=7)["reference"]
    within = np.mean([r["within_1mm"] for r in rows])
    assert within >= 0.99, f"{within:.1%} within 1 mm"
    assert np.median([r["final_distance_mm"] for r in rows]) < 0.1
    reached = [r["reach_20mm"] for r in rows if r["reach_20mm"] != ""]
    assert np.median(reached) <= params_2000.env.episode_steps / 3
    assert max(r["peak_speed_fraction"] for r in rows) <= 1.0 + 1e-6  # the velocity limit holds
    assert min(r["limit_margin"] for r in rows) >= 0.0  # and the joint limits


def test_parallel_evaluation_gives_the_serial_rows(small_params, small_cache):
    """Every episode's row, policy and reference, is the same on 2 worker processes as in one loop."""
    policy = policy_from_bundle(random_bundle(small_params, seed=3))
    chosen = heldout_targets(small_cache, 60, seed=11)
    serial = evaluate_drivers(["policy", "reference"], small_params, small_cache, chosen, 11, policy, workers=1)
    parallel = evaluate_drivers(["policy", "reference"], small_params, small_cache, chosen, 11, policy, workers=2)
    assert [r["episode"] for r in parallel["policy"]] == list(range(60))
    assert parallel == serial


def test_the_reference_drives_through_the_controller_api(small_params, small_cache, tmp_path):
    """DlsController.from_model reads the chain from an ONNX export; evaluate_controller drives the
    arm with its joint-position commands and ends where the in-env reference does."""
    from rlcore.pipeline.evaluate import evaluate_controller
    from rlcore.policy.onnx_export import export_onnx
    from rlcore.policy.reference import DlsController
    from rlcore.robots.chain import read_chain

    chain = read_chain(small_params.robot.urdf, small_params.robot.ee_link)
    path = tmp_path / "policy.onnx"
    export_onnx(random_bundle(small_params), chain, small_params.env.control_hz, path, "torchscript")
    controller = DlsController.from_model(path)
    metrics, rows = evaluate_controller(controller, small_params, small_cache, 40, seed=5)
    in_env = evaluate_drivers(["reference"], small_params, small_cache, heldout_targets(small_cache, 40, 5), 5)
    assert metrics["within_1mm"] == 1.0
    gaps = [abs(a["final_distance_mm"] - b["final_distance_mm"]) for a, b in zip(rows, in_env["reference"])]
    assert max(gaps) < 1e-3, f"the controller API and the env's reference differ by {max(gaps):.2e} mm"
    with pytest.raises(ValueError, match="damping"):
        DlsController.from_chain(chain, 30, damping=-1)
