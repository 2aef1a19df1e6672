"""Runtime device helpers: the torch.device for a device string, synchronise, memory figures,
peak memory over a block, CPU cores and torch threads. rlcore/runtime/probes.py probes the backends;
this module is what the rest of rlcore calls while it runs.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from rlcore.runtime.oscompat import cpu_list

MB = 1024 * 1024


def cpu_cores() -> int:
    """How many cores this process may run on."""
    return len(cpu_list())


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with n torch CPU threads, then restore the count (None: leave it as it is)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_DML_DEVICES: dict[str, Any] = {}


def torch_device(spec: str) -> torch.device:
    """A torch.device from our device string ("directml:0" maps to torch-directml's device)."""
    if spec.startswith("directml"):
        if spec not in _DML_DEVICES:
            index = int(spec.split(":")[1]) if ":" in spec else 0
            _DML_DEVICES[spec] = importlib.import_module("torch_directml").device(index)
        return _DML_DEVICES[spec]
    return torch.device(spec)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on the device (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    elif device.type != "cpu":  # DirectML has no synchronize(): a readback waits for the queue
        torch.zeros(1, device=device).add_(1).cpu()


def memory_info(device: torch.device) -> tuple[float | None, float | None]:
    """(free, total) in MB, None where the backend cannot tell."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return free / MB, total / MB
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        total = torch.mps.recommended_max_memory() / MB
        return total - torch.mps.driver_allocated_memory() / MB, total
    return None, None


class PeakMemory:
    """Peak device memory (MB) over a block: exact on CUDA/ROCm, polled on MPS, None elsewhere."""

    def __init__(self, device: torch.device, poll_s: float = 0.005) -> None:
        self.device = device
        self.poll_s = poll_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "mps":
            self.peak_mb = torch.mps.current_allocated_memory() / MB
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.peak_mb = max(self.peak_mb or 0.0, torch.mps.current_allocated_memory() / MB)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MB
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


def is_out_of_memory(err: BaseException) -> bool:
    """torch's out-of-memory error on any backend, or a backend's RuntimeError saying it ran out."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(err, oom_type) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())
