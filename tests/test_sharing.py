"""Sharing the machine between rlcore jobs (rlcore.runtime.sharing): job slots that count the
running jobs across processes, the threads each training takes, and two trainings at once."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlcore.runtime import sharing
from rlcore.runtime.oscompat import cpu_list

HOLD = """
import sys, time
from pathlib import Path
from rlcore.runtime.sharing import JobSlot
with JobSlot(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "jobs"
    monkeypatch.setenv(sharing.JOBS_DIR_ENV, str(folder))
    return folder


def hold_slot(folder: Path) -> subprocess.Popen:
    """Another process holding a job slot until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_slot_counts_while_held_and_not_after(jobs):
    assert sharing.running_jobs() == 1  # the caller alone
    with sharing.JobSlot() as slot:
        assert slot.path is not None and slot.path.is_file()
        assert sharing.running_jobs() == 1  # its own slot: still one job
    assert sharing.running_jobs() == 1
    assert list(jobs.glob("job-*.lock")) == []


def test_another_process_counts_until_it_is_killed(jobs):
    other = hold_slot(jobs)
    try:
        assert sharing.running_jobs() == 2
        with sharing.JobSlot():
            assert sharing.running_jobs() == 2
            with sharing.JobSlot():  # a job inside a job holds no second slot
                assert sharing.running_jobs() == 2
    finally:
        other.kill()
        other.wait()
    # killed: its lock went with it, though its file stays until it ages out
    assert len(list(jobs.glob("job-*.lock"))) == 1
    assert sharing.running_jobs() == 1


def test_a_killed_jobs_file_is_removed_once_stale(jobs, monkeypatch):
    other = hold_slot(jobs)
    other.kill()
    other.wait()
    monkeypatch.setattr(sharing, "STALE_S", 0.0)
    time.sleep(0.01)
    assert sharing.running_jobs() == 1
    assert list(jobs.glob("job-*.lock")) == []


def test_threads_split_the_cores_among_the_jobs(jobs, monkeypatch):
    monkeypatch.setattr(sharing, "cpu_list", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(sharing, "RECHECK_S", 0.0)
    share = sharing.CoreShare()
    assert share.threads() == 4
    assert sharing.worker_cores() == [0, 1, 2, 3]  # alone: workers pinned
    others = [hold_slot(jobs) for _ in range(2)]
    try:
        assert share.threads() == 4 // 3
        assert sharing.worker_cores() == [None] * 4  # shared: left to the OS
        assert sharing.CoreShare(2).threads() == 1
    finally:
        for proc in others:
            proc.kill()
            proc.wait()
    assert share.threads() == 4
    assert sharing.usable_cores(3) == 3 and sharing.usable_cores(99) == 4 and sharing.usable_cores("auto") == 4
    assert sharing.worker_cores(2) == [None, None]  # an explicit hardware.cores is never pinned


def test_no_writable_folder_means_alone(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(sharing.JOBS_DIR_ENV, str(blocked / "jobs"))
    with sharing.JobSlot() as slot:
        assert slot.path is None
        assert sharing.running_jobs() == 1


def test_hardware_cores_key(small_params):
    from rlcore.config.schema import ConfigError
    from rlcore.pipeline.params import apply_overrides, validate

    assert small_params.hardware.cores == "auto"
    assert validate(apply_overrides(small_params.model_dump(), ["hardware.cores=3"])).hardware.cores == 3
    for bad in ("0", "many", "1.5"):
        with pytest.raises(ConfigError, match="hardware.cores"):
            validate(apply_overrides(small_params.model_dump(), [f"hardware.cores={bad}"]))


@pytest.mark.slow
def test_two_trainings_at_once_each_take_at_most_2_5x_one_alone(tmp_path, small_params, small_cache):
    """Two identical twin trainings started together (rlcore.bench.contention's barrier) each
    finish their training in at most ~2.5x the time one takes alone (medians of alternating
    rounds; before the cores were shared, 6-10x), and each took a share of the cores."""
    from rlcore.bench.contention import run_group

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"targets": {"n": 600, "path": small_params.targets.path}}))
    sets = ["env.backend=twin", "train.algo=rlcore", "train.total_steps=65536", "train.n_envs=256"]
    ratios, pair_threads = [], []
    for _ in range(3):
        alone = run_group(sets, 1, cwd=tmp_path)[0]
        pair = run_group(sets, 2, cwd=tmp_path)
        ratios.append(max(r["seconds"] for r in pair) / alone["seconds"])
        pair_threads += [r["threads"][0] for r in pair]
    cores = len(cpu_list())
    assert statistics.median(ratios) <= 2.5, ratios
    assert all(t <= max(1, cores // 2) for t in pair_threads), pair_threads
