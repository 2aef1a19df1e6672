"""The device layer: probe every backend, record why it is or isn't usable, device helpers.

Backends: cpu, cuda (NVIDIA), rocm (AMD on Linux; torch's cuda API, told apart by
torch.version.hip), directml (torch-directml, Windows/WSL2), mps (Apple). The rest of rlcore reads
`Capabilities` flags, never device names, and gets its optimizer, synchronisation and memory
figures from here. Only this module makes backend-specific calls; rlcore/placement.py times the
devices and chooses among them.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rlcore.oscompat import cpu_list, cpu_name, host_memory_mb

MB = 1024 * 1024
# PyBullet envs by default: 64 x n_steps 16 = 1024 samples per update. With 16 envs (256 samples)
# the KL-adaptive learning rate collapsed and PyBullet training stalled near 66% success.
BULLET_ENVS = 64


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


# -- device helpers used everywhere else ------------------------------------------------------

_DML_DEVICES: dict[str, Any] = {}


def torch_device(spec: str, probes: list[Probe] | None = None) -> torch.device:
    """A torch.device from our device string ("directml:0" maps to torch-directml's device)."""
    if spec.startswith("directml"):
        if spec not in _DML_DEVICES:
            index = int(spec.split(":")[1]) if ":" in spec else 0
            _DML_DEVICES[spec] = importlib.import_module("torch_directml").device(index)
        return _DML_DEVICES[spec]
    return torch.device(spec)


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


class PortableAdam(torch.optim.Optimizer):
    """Adam with only mul_/add_/addcmul_/addcdiv_/sqrt: no foreach, no lerp, so it stays on
    DirectML instead of falling back to the CPU. Same update as torch.optim.Adam."""

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bias1 = 1 - beta1 ** state["step"]
                bias2_sqrt = math.sqrt(1 - beta2 ** state["step"])
                denom = v.sqrt().mul_(1 / bias2_sqrt).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / bias1)


def make_adam(params: Any, lr: float, caps: Capabilities, eps: float = 1e-5) -> torch.optim.Optimizer:
    """The fastest Adam that runs natively on the device."""
    if not caps.foreach:
        return PortableAdam(params, lr=lr, eps=eps)
    if caps.fused_adam:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    return torch.optim.Adam(params, lr=lr, eps=eps, foreach=True)
