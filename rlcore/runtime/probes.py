"""Device probes: try every backend, record why it is or isn't usable, and its capabilities.

Backends: cpu, cuda (NVIDIA), rocm (AMD on Linux; torch's cuda API, told apart by
torch.version.hip), directml (torch-directml, Windows/WSL2), mps (Apple). The rest of rlcore reads
`Capabilities` flags, never device names. The device layer is four modules, one concern each:
this one (probes and capabilities), rlcore/runtime/devices.py (runtime helpers: torch.device, synchronise,
memory), rlcore/pipeline/placement.py (timing the devices and choosing among them) and rlcore/algos/ppo/adam.py (an
Adam that runs natively everywhere). Only these make backend-specific calls.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rlcore.runtime.devices import MB
from rlcore.runtime.oscompat import cpu_name, host_memory_mb


class HardwareError(RuntimeError):
    """An explicitly requested device is not usable (the message carries the probe's reason)."""


@dataclass(frozen=True)
class Capabilities:
    """What a device can do; rlcore branches on these, never on device names."""

    float64: bool = True
    foreach: bool = True  # multi-tensor (foreach) kernels and torch.optim's default Adam path
    fused_adam: bool = False
    compile: bool = False  # torch.compile / CUDA graphs expected to work
    peak_memory: bool = False  # exact peak-memory query
    synchronize: bool = True  # an explicit device synchronise exists


@dataclass
class Probe:
    """One backend's answer: usable or not, and why."""

    backend: str
    device: str | None
    usable: bool
    reason: str
    name: str = "unknown"
    memory_total_mb: float | None = None  # None = the backend cannot tell
    memory_free_mb: float | None = field(default=None, compare=False)
    capabilities: Capabilities | None = None  # None where the device is not usable

    def stable_dict(self) -> dict[str, Any]:
        """What goes into hardware.json: no fluctuating figures (free memory lives elsewhere)."""
        d = asdict(self)
        d.pop("memory_free_mb")
        d["memory_total_mb"] = _unknown(self.memory_total_mb)
        return d


def _unknown(value: float | None) -> float | str:
    return "unknown" if value is None else round(value)


def _smoke_test(device: torch.device) -> None:
    """A real allocation and a tiny forward/backward pass; raises if the device is broken."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen).to(device)
    layer = torch.nn.Linear(8, 4).to(device)
    loss = layer(x).square().mean()
    loss.backward()
    if not math.isfinite(float(loss.detach().cpu())) or layer.weight.grad is None:
        raise RuntimeError("forward/backward gave no finite result")


def _supports_fused_adam(device: torch.device) -> bool:
    try:
        p = torch.nn.Parameter(torch.zeros(4, device=device))
        p.grad = torch.ones(4, device=device)
        torch.optim.Adam([p], lr=0.1, fused=True).step()
        return bool(float(p.detach().cpu()[0]) < 0)
    except Exception:  # noqa: BLE001 - unsupported is an answer, not an error
        return False


def probe_cpu() -> Probe:
    total = host_memory_mb()
    device = torch.device("cpu")
    caps = Capabilities(
        float64=True,
        foreach=True,
        fused_adam=_supports_fused_adam(device),
        compile=False,
        peak_memory=False,
        synchronize=True,
    )
    name = f"{cpu_name()} ({os.cpu_count()} logical cores)"
    return Probe("cpu", "cpu", True, "always available", name, total, None, caps)


def probe_cuda() -> list[Probe]:
    """One probe per CUDA/ROCm device, or one unusable probe saying why there is none."""
    backend = "rocm" if getattr(torch.version, "hip", None) else "cuda"
    if not torch.cuda.is_available():
        built = torch.version.hip or torch.version.cuda
        why = "torch has no CUDA/ROCm build (CPU-only wheel)" if not built else "no device visible to the driver"
        return [Probe(backend, None, False, why)]
    probes = []
    for i in range(torch.cuda.device_count()):
        device = torch.device("cuda", i)
        try:
            _smoke_test(device)
            free, total = torch.cuda.mem_get_info(device)
            compile_ok = backend == "cuda" and importlib.util.find_spec("triton") is not None
            caps = Capabilities(
                float64=True,
                foreach=True,
                fused_adam=_supports_fused_adam(device),
                compile=compile_ok,
                peak_memory=True,
                synchronize=True,
            )
            probes.append(
                Probe(
                    backend,
                    f"cuda:{i}",
                    True,
                    "smoke test passed",
                    torch.cuda.get_device_name(i),
                    total / MB,
                    free / MB,
                    caps,
                )
            )
        except Exception as err:  # noqa: BLE001 - a broken device is recorded, not fatal
            probes.append(Probe(backend, f"cuda:{i}", False, f"smoke test failed: {err}"))
    return probes


def probe_directml(importer: Callable[[str], Any] = importlib.import_module) -> list[Probe]:
    """Probe torch-directml; import errors (OSError on plain Linux) become reasons."""
    try:
        dml = importer("torch_directml")
    except (ImportError, OSError) as err:
        return [Probe("directml", None, False, f"torch_directml not importable: {type(err).__name__}: {err}")]
    try:
        if not dml.is_available():
            return [Probe("directml", None, False, "torch_directml.is_available() is False")]
        count = int(dml.device_count())
    except Exception as err:  # noqa: BLE001 - is_available() can raise RuntimeError
        return [Probe("directml", None, False, f"torch_directml.is_available() raised {type(err).__name__}: {err}")]
    probes = []
    for i in range(count):
        try:
            device = dml.device(i)
            _smoke_test(device)
            caps = Capabilities(
                float64=bool(dml.has_float64_support(i)),
                foreach=False,
                fused_adam=False,
                compile=False,
                peak_memory=False,
                synchronize=False,
            )
            # gpu_memory() gives per-tile fill fractions, no totals: total stays unknown
            probes.append(
                Probe("directml", f"directml:{i}", True, "smoke test passed", str(dml.device_name(i)), None, None, caps)
            )
        except Exception as err:  # noqa: BLE001
            probes.append(Probe("directml", f"directml:{i}", False, f"smoke test failed: {err}"))
    return probes


def probe_mps() -> Probe:
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_available():
        built = backend is not None and backend.is_built()
        return Probe(
            "mps",
            None,
            False,
            "MPS not available (not macOS/Apple silicon)"
            if not built
            else "torch built with MPS but no device available",
        )
    device = torch.device("mps")
    try:
        _smoke_test(device)
    except Exception as err:  # noqa: BLE001
        return Probe("mps", "mps", False, f"smoke test failed: {err}")
    total = None
    if hasattr(torch.mps, "recommended_max_memory"):
        total = torch.mps.recommended_max_memory() / MB
    caps = Capabilities(
        float64=False,
        foreach=True,
        fused_adam=_supports_fused_adam(device),
        compile=False,
        peak_memory=False,
        synchronize=True,
    )
    return Probe("mps", "mps", True, "smoke test passed", "Apple GPU", total, None, caps)


def probe_all(dml_importer: Callable[[str], Any] = importlib.import_module) -> list[Probe]:
    """Every backend, each on its own; never raises for a missing backend."""
    return [probe_cpu(), *probe_cuda(), *probe_directml(dml_importer), probe_mps()]


def capabilities(device: torch.device) -> Capabilities:
    """Capability flags for a torch.device (probing the backend if needed)."""
    if device.type == "cpu":
        return Capabilities(fused_adam=_supports_fused_adam(device), peak_memory=False)
    if device.type == "cuda":
        hip = bool(getattr(torch.version, "hip", None))
        return Capabilities(
            fused_adam=True, compile=not hip and importlib.util.find_spec("triton") is not None, peak_memory=True
        )
    if device.type == "mps":
        return Capabilities(float64=False, fused_adam=_supports_fused_adam(device))
    return Capabilities(float64=False, foreach=False, fused_adam=False, synchronize=False)
