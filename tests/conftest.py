"""Shared fixtures: small params and a small target cache built once per session."""

from __future__ import annotations

import pytest

from rlcore.config.schema import Params
from rlcore.envs.target_build import build_cache
from rlcore.envs.targets import TargetCache


@pytest.fixture(scope="session")
def small_params(tmp_path_factory) -> Params:
    path = tmp_path_factory.mktemp("data") / "targets.npz"
    return Params.model_validate({"targets": {"n": 600, "path": str(path)}})


@pytest.fixture(scope="session")
def small_cache(small_params) -> TargetCache:
    cache = build_cache(small_params)
    cache.save(small_params.targets.path)
    return cache
