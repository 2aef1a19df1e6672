"""The one place that touches what only some operating systems have: CPU affinity, /proc, and
the multiprocessing start methods. Every caller gets an answer on Windows, macOS and Linux alike.

- Affinity (`os.sched_getaffinity` / `sched_setaffinity`): Linux only. Elsewhere every core is
  usable and nothing is pinned.
- `/proc/cpuinfo`: Linux only. Elsewhere `platform` names the CPU.
- Physical memory: `os.sysconf` on Linux and macOS, GlobalMemoryStatusEx on Windows.
- Start methods: Windows has only spawn; macOS and Linux also have forkserver (and fork).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
from typing import Literal

StartMethod = Literal["auto", "forkserver", "spawn", "fork"]


def cpu_list() -> list[int | None]:
    """The cores this process may run on, from its affinity mask; None for each core where the OS
    cannot pin processes (Windows, macOS)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return sorted(getaffinity(0))
    return [None] * (os.cpu_count() or 1)


def pin_to_cpu(cpu: int | None) -> bool:
    """Pin this process to one core where the OS can (Linux); returns whether it did."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if cpu is None or setaffinity is None:
        return False
    setaffinity(0, {cpu})
    return True


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # no /proc: Windows, macOS
        pass
    return platform.processor() or platform.machine()


def host_memory_mb() -> float | None:
    """The machine's physical memory in MB: sysconf on Linux and macOS, the Win32 API on Windows,
    None where neither answers."""
    sysconf = getattr(os, "sysconf", None)
    if sysconf is not None:
        try:
            return sysconf("SC_PAGE_SIZE") * sysconf("SC_PHYS_PAGES") / 2**20
        except (ValueError, OSError):
            pass
    if os.name == "nt":
        import ctypes

        class MemoryStatus(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong)] + [
                (name, ctypes.c_ulonglong)
                for name in ("total", "avail", "total_page", "avail_page", "total_virtual", "avail_virtual", "ext")
            ]

        status = MemoryStatus()
        status.length = ctypes.sizeof(MemoryStatus)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return status.total / 2**20
    return None


def start_methods() -> list[str]:
    """The multiprocessing start methods this OS has (Windows: spawn only)."""
    return multiprocessing.get_all_start_methods()


def resolve_start_method(requested: str) -> str:
    """`hardware.mp_start_method` as this OS can honour it: `auto` is forkserver where the OS has
    it (one process imports torch, SB3 and PyBullet once and forks the workers from it), else
    spawn. An explicit method the OS lacks is a ValueError naming the key."""
    available = start_methods()
    if requested == "auto":
        return "forkserver" if "forkserver" in available else "spawn"
    if requested not in available:
        raise ValueError(
            f"hardware.mp_start_method = {requested!r} is not available on this OS "
            f"(available: {', '.join(available)}); use auto"
        )
    return requested


def preload_for_forkserver(method: str, modules: list[str]) -> None:
    """Have the fork server import `modules` once, so the workers it forks start in milliseconds."""
    if method == "forkserver":
        multiprocessing.set_forkserver_preload(modules)


def lowest_priority() -> None:
    """Run this process at the lowest CPU priority: nice 19 on Linux and macOS, the idle priority
    class on Windows."""
    if hasattr(os, "nice"):
        os.nice(19)
    elif os.name == "nt":
        import ctypes

        idle_priority_class = 0x40
        kernel32 = ctypes.windll.kernel32
        kernel32.SetPriorityClass(kernel32.GetCurrentProcess(), idle_priority_class)
