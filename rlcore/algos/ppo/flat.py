"""All parameters of a module in one contiguous buffer (and all gradients in another).

A small PPO network has a dozen parameter tensors, and at PPO's minibatch sizes each optimizer
or clipping kernel costs more in dispatch than in arithmetic. With the parameters as views into one
flat tensor, zeroing the gradients, measuring and clipping their norm and the whole Adam step are a
handful of kernels on one tensor, whatever the network. Plain ops only (no foreach), so the same
path runs on DirectML.
"""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import nn


class FlatParameters:
    """Re-seats every parameter of `module` as a view into one flat parameter, and every gradient
    as a view into one flat gradient buffer; autograd accumulates into those views in place.

    Build it after the module is on its device (moving the module afterwards would copy the
    parameters out of the buffer). `param` is what the optimizer steps; `order` sets the layout
    (ActorCritic.flat_order puts each actor layer beside its critic twin, so the pair can be
    read as one stacked tensor)."""

    def __init__(self, module: nn.Module, order: list[nn.Parameter] | None = None) -> None:
        params = [p for p in (order if order is not None else module.parameters()) if p.requires_grad]
        if {id(p) for p in params} != {id(p) for p in module.parameters() if p.requires_grad}:
            raise ValueError("order must list every trainable parameter of the module once")
        if not params:
            raise ValueError("module has no trainable parameters")
        starts = [0, *accumulate(p.numel() for p in params)]
        self.param = nn.Parameter(torch.empty(starts[-1], device=params[0].device, dtype=params[0].dtype))
        self.param.grad = torch.zeros_like(self.param)
        with torch.no_grad():
            for p, start, end in zip(params, starts, starts[1:]):
                self.param[start:end].copy_(p.reshape(-1))
                p.data = self.param.data[start:end].view_as(p)
                p.grad = self.param.grad[start:end].view_as(p)
        self.offsets = {id(p): start for p, start in zip(params, starts)}

    def view(self, params: list[nn.Parameter], grad: bool = False) -> torch.Tensor:
        """Adjacent, same-shape parameters (or their gradients) as one stacked (len, *shape) view."""
        start = self.offsets[id(params[0])]
        shape = params[0].shape
        for i, p in enumerate(params):
            if p.shape != shape or self.offsets[id(p)] != start + i * p.numel():
                raise ValueError("parameters are not adjacent and equal in shape in the flat layout")
        source = self.grad if grad else self.param.data
        return source[start : start + len(params) * params[0].numel()].view(len(params), *shape)

    @property
    def grad(self) -> torch.Tensor:
        assert self.param.grad is not None
        return self.param.grad

    def zero_grad(self) -> None:
        """One kernel; the per-parameter gradient views stay attached."""
        self.grad.zero_()

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a global L2 norm of at most max_norm without a host sync;
        returns the norm before clipping (as torch.nn.utils.clip_grad_norm_ does)."""
        norm = torch.dot(self.grad, self.grad).sqrt()  # linalg norms are not native on every backend
        self.grad.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
        return norm
