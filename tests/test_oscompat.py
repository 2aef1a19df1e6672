"""The guarded OS helper: answers on every OS, and one-line errors for a start method the OS lacks."""

from __future__ import annotations

import pytest

from rlcore.config.schema import ConfigError
from rlcore.pipeline.params import load_params
from rlcore.runtime import oscompat


def test_auto_takes_forkserver_where_the_os_has_it_else_spawn(monkeypatch):
    monkeypatch.setattr(oscompat, "start_methods", lambda: ["fork", "spawn", "forkserver"])
    assert oscompat.resolve_start_method("auto") == "forkserver"
    monkeypatch.setattr(oscompat, "start_methods", lambda: ["spawn"])  # Windows
    assert oscompat.resolve_start_method("auto") == "spawn"
    with pytest.raises(ValueError, match="hardware.mp_start_method = 'fork' is not available on this OS"):
        oscompat.resolve_start_method("fork")


def test_params_refuse_a_start_method_the_os_lacks(monkeypatch):
    monkeypatch.setattr(oscompat, "start_methods", lambda: ["spawn"])
    with pytest.raises(ConfigError, match=r"hardware.mp_start_method.*'forkserver' is not available .*spawn"):
        load_params("params.yaml", ["hardware.mp_start_method=forkserver"])
    assert load_params("params.yaml", ["hardware.mp_start_method=spawn"]).hardware.mp_start_method == "spawn"


def test_without_affinity_every_core_counts_and_nothing_is_pinned(monkeypatch):
    monkeypatch.delattr(oscompat.os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(oscompat.os, "sched_setaffinity", raising=False)
    monkeypatch.setattr(oscompat.os, "cpu_count", lambda: 3)
    assert oscompat.cpu_list() == [None, None, None]
    assert oscompat.pin_to_cpu(0) is False
    assert oscompat.cpu_name()  # /proc or platform: some name, never an error
