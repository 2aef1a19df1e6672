"""Actor-critic MLPs with a state-independent log-std, and a running observation normaliser.

Sampling is mean + std * randn (torch.distributions' Normal.sample falls back to the CPU on
DirectML); log-probabilities and entropy are written out by hand for the same reason.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}
LOG_2PI = math.log(2 * math.pi)


def mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    """Linear layers with orthogonal init; the last one scaled by out_gain, no activation."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def linear_layers(net: nn.Sequential) -> list[nn.Linear]:
    """The Linear layers of an MLP built by `mlp`, in order."""
    return [m for m in net if isinstance(m, nn.Linear)]


class ActorCritic(nn.Module):
    """Separate policy and value networks; Gaussian actions with a learned log-std vector."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        actor_hidden: list[int],
        critic_hidden: list[int],
        activation: str = "elu",
        init_log_std: float = -0.5,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.actor = mlp([obs_dim, *actor_hidden, act_dim], activation, 0.01)
        self.critic = mlp([obs_dim, *critic_hidden, 1], activation, 1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def flat_order(self) -> list[nn.Parameter]:
        """Parameters with each hidden actor layer beside its critic twin (weights, then biases):
        the flat layout in which equal-width layers read as one stacked (2, out, in) tensor."""
        a, c = linear_layers(self.actor), linear_layers(self.critic)
        paired = min(len(a), len(c)) - 1
        order: list[nn.Parameter] = []
        for la, lc in zip(a[:paired], c[:paired]):
            order += [la.weight, lc.weight, la.bias, lc.bias]
        for layer in a[paired:] + c[paired:]:
            order += [layer.weight, layer.bias]
        return [*order, self.log_std]

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - 0.5 * LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * LOG_2PI + self.log_std).sum()

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions; return (actions, log_probs, values) for normalised observations."""
        mean = self.actor(obs)
        actions = mean + torch.exp(self.log_std) * torch.randn_like(mean)
        return actions, self.log_prob(mean, actions), self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_probs, entropy per sample, values) for the update."""
        mean = self.actor(obs)
        entropy = self.entropy().expand(obs.shape[0])
        return self.log_prob(mean, actions), entropy, self.critic(obs).squeeze(-1)

    def log_prob_and_value(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_probs, values) for the update, with grad."""
        return self.log_prob(self.actor(obs), actions), self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


class RunningNorm(nn.Module):
    """Running mean/variance of observations (parallel Welford), kept on the device and saved
    in the state dict with its count. The count is a sum of batch sizes, so a host copy of it
    gives the update's weights without a device read (7 kernels per update)."""

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.tensor(1e-4))
        self.clip = clip
        self.eps = eps
        self._host_count = float(self.count)

    def get_extra_state(self) -> dict[str, float]:
        # the host count exactly (a Python float): the float32 device count rounds it, and a
        # resumed run must weigh its updates as the uninterrupted run does
        return {"host_count": self._host_count}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self._host_count = float(state["host_count"])

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        if prefix + "_extra_state" not in state_dict and prefix + "count" in state_dict:
            # files written before the exact host count: one read of the device count
            state_dict[prefix + "_extra_state"] = {"host_count": float(state_dict[prefix + "count"])}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        n = float(x.shape[0])
        total = self._host_count + n
        ratio = n / total
        delta = batch_mean - self.mean
        self.mean.add_(delta, alpha=ratio)
        # parallel Welford: var = (var * count + batch_var * n + delta^2 * count * n / total) / total
        self.var.mul_(1 - ratio).add_(torch.addcmul(batch_var, delta, delta, value=1 - ratio), alpha=ratio)
        self.count.fill_(total)
        self._host_count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)
