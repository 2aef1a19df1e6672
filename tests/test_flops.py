"""The update's FLOP count against torch's own counter, and the matmul peak it is compared with."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from rlcore.bench.flops import matmul_gflops, mlp_flops, update_flops_per_sample
from rlcore.config.schema import Params
from rlcore.policy.networks import ActorCritic


def counted_flops(model: ActorCritic, obs_dim: int, act_dim: int, batch: int) -> int:
    """FLOPs of one forward and backward pass through both networks, by torch's counter."""
    obs, actions = torch.randn(batch, obs_dim), torch.randn(batch, act_dim)
    with FlopCounterMode(display=False) as counter:
        log_prob, value = model.log_prob_and_value(obs, actions)
        (log_prob.sum() + value.sum()).backward()
    return counter.get_total_flops()


def test_update_flops_match_torch_flop_counter():
    params = Params.model_validate({"train": {"actor_hidden": [64, 32], "critic_hidden": [48], "epochs": 3}})
    obs_dim, act_dim, batch = 27, 6, 128
    model = ActorCritic(obs_dim, act_dim, [64, 32], [48])
    per_sample = counted_flops(model, obs_dim, act_dim, batch) / batch
    assert update_flops_per_sample(params, obs_dim, act_dim) == 3 * per_sample


def test_mlp_flops_by_hand():
    forward, backward = mlp_flops([10, 20, 5])  # 200 + 100 multiply-adds
    assert forward == 600
    assert backward == 600 + 200  # weight gradients of both layers, the input gradient of the second


def test_matmul_peak_is_a_measured_rate():
    small, large = matmul_gflops(torch.device("cpu"), 64, 0.05), matmul_gflops(torch.device("cpu"), 512, 0.1)
    # GFLOP/s of a real CPU, not a constant. The 64 x 64 product is a few microseconds' work, so a
    # loaded machine that deschedules the test for a moment can cut it 100-fold (0.05 GFLOP/s seen
    # beside a training run): its bound is loose, the 512 x 512 one's is not.
    assert 1e-3 < small < 1e5 and 0.1 < large < 1e5
