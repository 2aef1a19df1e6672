"""Shared fixtures: small params and a small target cache built once per session."""

from __future__ import annotations

import pytest

from rlcore.config import Params
from rlcore.targets import TargetCache, build_cache


@pytest.fixture(scope="session")
def small_params(tmp_path_factory) -> Params:
    path = tmp_path_factory.mktemp("data") / "targets.npz"
    return Params.model_validate({"targets": {"n": 600, "path": str(path)}})


@pytest.fixture(scope="session")
def small_cache(small_params) -> TargetCache:
    cache = build_cache(small_params)
    cache.save(small_params.targets.path)
    return cache
