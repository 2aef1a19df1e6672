"""Adam for every device: torch's fused or foreach Adam where the device has those kernels, else a
portable Adam built from plain elementwise ops (DirectML)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from rlcore.runtime.probes import Capabilities


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
