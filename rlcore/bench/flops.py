"""How close the PPO update runs to the machine's limit: its FLOPs per sample, counted from the
network sizes, and the fp32 matmul peak of a device, measured with torch.mm."""

from __future__ import annotations

import time

import torch

from rlcore.config.schema import Params
from rlcore.runtime.devices import synchronize

MATMUL_SIZES = (256, 512, 1024, 2048)  # square fp32 products; the peak is the fastest of them


def mlp_flops(sizes: list[int]) -> tuple[int, int]:
    """(forward, backward) FLOPs per sample of an MLP with layer sizes [in, hidden..., out]: a
    multiply-add is 2 FLOPs; the backward pass computes each layer's weight gradient and, below
    the top of the stack, the gradient of its input (the first layer's input needs none)."""
    products = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = 2 * sum(products)
    backward = 2 * sum(products) + 2 * sum(products[1:])
    return forward, backward


def update_flops_per_sample(params: Params, obs_dim: int, act_dim: int) -> float:
    """FLOPs the PPO update spends per rollout sample: `train.epochs` passes of forward and
    backward through the actor and the critic (activations, losses and Adam are left out: they
    are elementwise, a few percent at these widths)."""
    t = params.train
    actor = mlp_flops([obs_dim, *t.actor_hidden, act_dim])
    critic = mlp_flops([obs_dim, *t.critic_hidden, 1])
    return float(t.epochs * (sum(actor) + sum(critic)))


def matmul_gflops(device: torch.device, n: int, seconds: float = 0.3) -> float:
    """GFLOP/s of an n x n fp32 torch.mm on `device`, repeated for about `seconds` after a warm-up."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        repeats += 1
        if repeats % 4 == 0:
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2.0 * n**3 * repeats / elapsed / 1e9


def matmul_peak_gflops(device: torch.device, sizes: tuple[int, ...] = MATMUL_SIZES) -> float:
    """The device's fp32 matmul peak as measured here: the fastest of square products of `sizes`."""
    return max(matmul_gflops(device, n) for n in sizes)
