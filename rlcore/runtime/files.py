"""Outputs written whole or not at all, and disk errors as one line.

Every file a stage writes goes through `atomic_path`: the writer fills a temporary file beside the
target, which replaces the target only when the writer returns (os.replace, atomic on POSIX and
Windows); a failure (a full disk, a kill) leaves the old file as it was and no temporary behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskError(OSError):
    """A write that the disk refused (full, read-only, no permission), said in one line."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer to fill; it becomes `path` when the block ends
    without error, and is removed otherwise. Disk errors become `DiskError` naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error(err, path) from None
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise disk_error(err, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any, **kwargs: Any) -> None:
    """Write `data` as indented JSON (and a final newline) to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, **kwargs) + "\n")


def disk_error(err: OSError, path: Path) -> OSError:
    """`DiskError` with one line for a full, read-only or forbidden disk; other errors unchanged."""
    if isinstance(err, DiskError) or err.errno not in DISK_ERRNOS:
        return err
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = "the disk is full"
        advice = "free some space and run again"
    else:
        why = "the folder is read-only or not yours"
        advice = "make it writable, or run from a writable copy"
    return DiskError(err.errno, f"cannot write {path}: {why} ({err.strerror}); {advice}")


def check_free_space(folder: str | Path, need_mb: float) -> None:
    """Stop with `DiskError` before work starts when `folder`'s disk has less than `need_mb` free."""
    folder = Path(folder)
    probe = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("."))
    free_mb = shutil.disk_usage(probe).free / 2**20
    if free_mb < need_mb:
        raise DiskError(
            errno.ENOSPC,
            f"{folder}: {free_mb:,.0f} MB free on its disk, this stage writes up to {need_mb:,.0f} MB; "
            "free some space and run again",
        )


def check_writable(paths: list[Path]) -> None:
    """Stop with `DiskError` naming the first output whose folder cannot take a new file (read-only,
    not ours, full), before work starts; creates missing folders."""
    import tempfile

    for folder in dict.fromkeys(Path(p).parent for p in paths):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise disk_error(err, folder) from None
