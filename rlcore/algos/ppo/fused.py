"""The actor-critic pair run as one stacked network, and the PPO loss gradient written out by hand.

At PPO's minibatch sizes a pair of small MLPs costs more in per-op dispatch and autograd
bookkeeping than in arithmetic, on a CPU and on a GPU alike. When the actor and the critic have the
same hidden widths, FlatParameters lays each actor layer beside its critic twin, so both networks
run as one batched matmul per layer. The backward pass is the chain rule for this fixed network and
loss, writing every gradient straight into the flat gradient buffer: no autograd graph, no zeroing,
about a third of the kernels. tests/test_ppo.py checks loss and gradients against autograd
(PPO.loss, which stays the readable reference and the path for other shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlcore.algos.ppo.flat import FlatParameters
from rlcore.config.schema import TrainConfig
from rlcore.policy.networks import LOG_2PI, ActorCritic, linear_layers

ACTIVATION_FN = {"elu": F.elu, "tanh": torch.tanh, "relu": torch.relu, "silu": F.silu}
# d out / d pre from the layer's input (pre) and output (out)
ACTIVATION_GRAD = {
    "elu": lambda pre, out: (out + 1.0).clamp(max=1.0),  # alpha 1: exp(pre) = out + 1 below zero
    "tanh": lambda pre, out: 1.0 - out.square(),
    "relu": lambda pre, out: (pre > 0).to(out.dtype),
    "silu": lambda pre, out: torch.sigmoid(pre) * (1.0 + pre - out),  # s + x s (1 - s), with x s = out
}


class FusedActorCritic:
    """Forward pass and hand-written PPO backward for an ActorCritic whose actor and critic have
    equal hidden widths, reading weights from (and writing gradients into) a FlatParameters
    buffer laid out by ActorCritic.flat_order."""

    @staticmethod
    def supports(model: ActorCritic) -> bool:
        """Equal hidden widths (at least one hidden layer) and an activation with a known derivative."""
        actor, critic = linear_layers(model.actor), linear_layers(model.critic)
        same = len(actor) == len(critic) > 1 and all(
            a.weight.shape == c.weight.shape for a, c in zip(actor[:-1], critic[:-1])
        )
        return same and model.activation in ACTIVATION_GRAD

    def __init__(self, model: ActorCritic, flat: FlatParameters, cfg: TrainConfig) -> None:
        if not self.supports(model):
            raise ValueError("the fused path needs equal actor and critic hidden widths and a known activation")
        self.cfg = cfg
        actor, critic = linear_layers(model.actor), linear_layers(model.critic)

        def pair(a: nn.Parameter, c: nn.Parameter, grad: bool = False) -> torch.Tensor:
            return flat.view([a, c], grad)

        # hidden layers: weights (2, out, in), biases (2, 1, out), and their gradient views
        self.hidden = [
            (
                pair(la.weight, lc.weight),
                pair(la.bias, lc.bias).unsqueeze(1),
                pair(la.weight, lc.weight, grad=True),
                pair(la.bias, lc.bias, grad=True).unsqueeze(1),
            )
            for la, lc in zip(actor[:-1], critic[:-1])
        ]
        heads = []
        for layer in (actor[-1], critic[-1]):
            heads.append(
                (
                    flat.view([layer.weight])[0],
                    flat.view([layer.bias])[0],
                    flat.view([layer.weight], grad=True)[0],
                    flat.view([layer.bias], grad=True)[0],
                )
            )
        self.actor_head, self.critic_head = heads
        self.log_std = flat.view([model.log_std])[0]
        self.log_std_grad = flat.view([model.log_std], grad=True)[0]
        self.act_dim = self.log_std.shape[0]
        self.activation = ACTIVATION_FN[model.activation]
        self.activation_grad = ACTIVATION_GRAD[model.activation]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """(action means, values, cache for the backward pass) of normalised observations."""
        h = obs.expand(2, *obs.shape)
        cache = []
        for weight, bias, _, _ in self.hidden:
            pre = torch.baddbmm(bias, h, weight.transpose(1, 2))
            out = self.activation(pre)
            cache.append((h, pre, out))
            h = out
        (wa, ba, _, _), (wc, bc, _, _) = self.actor_head, self.critic_head
        return torch.addmm(ba, h[0], wa.t()), torch.addmm(bc, h[1], wc.t()).squeeze(-1), cache

    @torch.no_grad()
    def loss_and_grad(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Write the PPO loss gradient into the flat gradient buffer; return the stacked
        (policy_loss, value_loss, approx_kl, clip_fraction), as PPO._loss computes them."""
        cfg = self.cfg
        mean, values, cache = self.forward(batch["obs"])
        n = mean.shape[0]
        inv_std = torch.exp(-self.log_std)
        z = (batch["actions"] - mean) * inv_std
        z2 = z.square()
        log_probs = -0.5 * z2.sum(-1) - (self.log_std.sum() + 0.5 * LOG_2PI * self.act_dim)
        log_ratio = log_probs - batch["log_probs"]
        ratio = torch.exp(log_ratio)
        adv = batch["advantages"]
        unclipped = ratio * adv
        clipped = ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range) * adv
        policy_loss = -torch.minimum(unclipped, clipped).mean()
        # d loss / d log_prob: the unclipped term's, where it is the smaller one (else zero)
        g_logp = torch.where(unclipped <= clipped, unclipped, 0.0) * (-1.0 / n)
        diff = values - batch["returns"]
        if cfg.clip_value is None:
            value_loss = diff.square().mean()
        else:  # the clipped term is only the larger one outside the clip range, where it has no gradient
            clipped_diff = batch["values"] + (values - batch["values"]).clamp(-cfg.clip_value, cfg.clip_value)
            clipped_diff = clipped_diff - batch["returns"]
            value_loss = torch.maximum(diff.square(), clipped_diff.square()).mean()
            diff = torch.where(diff.square() >= clipped_diff.square(), diff, 0.0)
        g_values = (diff * (2.0 * cfg.value_coef / n)).unsqueeze(-1)
        g_logp = g_logp.unsqueeze(-1)
        g_mean = g_logp * z * inv_std
        g_log_std = (g_logp * (z2 - 1.0)).sum(0)
        if cfg.entropy_coef:
            g_log_std -= cfg.entropy_coef
        self.log_std_grad.copy_(g_log_std)

        h = cache[-1][2]
        (wa, _, gwa, gba), (wc, _, gwc, gbc) = self.actor_head, self.critic_head
        torch.mm(g_mean.t(), h[0], out=gwa)
        torch.sum(g_mean, 0, out=gba)
        torch.mm(g_values.t(), h[1], out=gwc)
        torch.sum(g_values, 0, out=gbc)
        g_h = torch.stack([g_mean @ wa, g_values @ wc])
        for i in reversed(range(len(self.hidden))):
            weight, _, g_weight, g_bias = self.hidden[i]
            h_in, pre, out = cache[i]
            g_pre = g_h * self.activation_grad(pre, out)
            torch.bmm(g_pre.transpose(1, 2), h_in, out=g_weight)
            torch.sum(g_pre, 1, keepdim=True, out=g_bias)
            if i > 0:
                g_h = torch.bmm(g_pre, weight)
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_fraction = ((ratio - 1).abs() > cfg.clip_range).float().mean()
        return torch.stack([policy_loss, value_loss, approx_kl, clip_fraction])
