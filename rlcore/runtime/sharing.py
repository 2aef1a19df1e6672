"""Sharing the machine's cores between rlcore jobs that run at once (two `dvc exp` runs, tuning
workers, `bench seeds`, the test suite's workers).

Each training holds a job slot while it runs: a lock file in a machine-wide folder
(`<temp>/rlcore-jobs`, or $RLCORE_JOBS_DIR), locked by the process for as long as it lives, so a
killed job's slot frees itself (the OS drops the lock). A training splits its cores
(`hardware.cores`: auto = the cores this process may run on) evenly among the jobs holding slots,
re-read as it trains: alone it uses every core; beside a second job, half. Torch's OpenMP threads
spin while they wait for work, so two jobs that each ran a thread per core took turns spinning
on the same cores and together delivered a third of what one did alone (docs/benchmarks.md).

filelock locks the same way on Windows, macOS and Linux.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from rlcore.runtime.oscompat import cpu_list

JOBS_DIR_ENV = "RLCORE_JOBS_DIR"
STALE_S = 60.0  # an unlocked slot file older than this is a killed job's: removed
RECHECK_S = 0.5  # how often a training re-counts the jobs

_current: JobSlot | None = None


def jobs_dir() -> Path:
    """The machine-wide folder of job slots."""
    return Path(os.environ.get(JOBS_DIR_ENV) or Path(tempfile.gettempdir()) / "rlcore-jobs")


def usable_cores(setting: int | str = "auto") -> int:
    """`hardware.cores`: auto = the cores this process may run on; N = at most N of them."""
    cores = len(cpu_list())
    return cores if setting == "auto" else max(1, min(int(setting), cores))


class JobSlot:
    """This process's slot among the machine's running rlcore jobs, held inside a `with` block.
    Where the folder cannot be written, the job runs without one (and counts itself alone)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or jobs_dir()
        self.path: Path | None = None
        self._lock: FileLock | None = None
        self._outer: JobSlot | None = None

    def __enter__(self) -> JobSlot:
        global _current
        self._outer = _current
        if _current is not None:  # a job inside a job (a benchmark's training): one slot
            return self
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"job-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock"
            lock = FileLock(path)
            lock.acquire(timeout=0)
        except (OSError, Timeout):
            return self
        self.path, self._lock, _current = path, lock, self
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        global _current
        if self._lock is None:
            return
        self._lock.release()
        _current = self._outer
        if self.path is not None:
            try:
                self.path.unlink()
            except OSError:  # Windows: another job is checking it this instant; it ages out
                pass


def running_jobs(directory: Path | None = None) -> int:
    """The rlcore jobs holding slots now, this process's own included (at least 1: the caller)."""
    directory = directory or jobs_dir()
    own = _current.path if _current is not None else None
    count = 0 if own is not None else 1
    try:
        paths = list(directory.glob("job-*.lock"))
    except OSError:
        return count
    for path in paths:
        if path == own:
            count += 1
            continue
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # held: a running job
            count += 1
            continue
        except OSError:  # gone meanwhile, or unreadable
            continue
        lock.release()
        try:
            if time.time() - path.stat().st_mtime > STALE_S:
                path.unlink()
        except OSError:
            pass
    return count


class CoreShare:
    """The CPU threads a training should use now: its cores split evenly among the running
    rlcore jobs, re-counted at most every RECHECK_S."""

    def __init__(self, setting: int | str = "auto") -> None:
        self.cores = usable_cores(setting)
        self._threads = self.cores
        self._checked = float("-inf")

    def threads(self) -> int:
        now = time.monotonic()
        if now - self._checked >= RECHECK_S:
            self._checked = now
            self._threads = max(1, self.cores // running_jobs())
        return self._threads


def worker_cores(setting: int | str = "auto") -> list[int | None]:
    """The cores to pin env worker processes to, one entry a worker: this process's cores where
    `hardware.cores` is auto and no other rlcore job is running (pinned, two workers on 2 cores
    stepped 15% faster); None each, left to the OS, where the cores are shared (two jobs pinned
    to the same cores ran 20% slower together than unpinned)."""
    cores = cpu_list()
    if setting == "auto" and running_jobs() <= 1:
        return cores
    return [None] * usable_cores(setting)
