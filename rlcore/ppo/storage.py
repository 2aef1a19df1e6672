"""Rollout storage preallocated on the device, with GAE vectorised across envs."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class RolloutStorage:
    """n_steps x n_envs transitions; observations are stored already normalised."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        kw = {"device": device, "dtype": torch.float32}
        self.n_steps, self.n_envs, self.device = n_steps, n_envs, device
        self.obs = torch.zeros(n_steps, n_envs, obs_dim, **kw)
        self.actions = torch.zeros(n_steps, n_envs, act_dim, **kw)
        self.log_probs = torch.zeros(n_steps, n_envs, **kw)
        self.rewards = torch.zeros(n_steps, n_envs, **kw)
        self.dones = torch.zeros(n_steps, n_envs, **kw)
        self.values = torch.zeros(n_steps, n_envs, **kw)
        self.advantages = torch.zeros(n_steps, n_envs, **kw)
        self.returns = torch.zeros(n_steps, n_envs, **kw)
        self.step = 0

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
        rewards: torch.Tensor,
        dones: torch.Tensor,
        values: torch.Tensor,
    ) -> None:
        t = self.step
        self.obs[t].copy_(obs)
        self.actions[t].copy_(actions)
        self.log_probs[t].copy_(log_probs)
        self.rewards[t].copy_(rewards)
        self.dones[t].copy_(dones)
        self.values[t].copy_(values)
        self.step += 1

    def compute_gae(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        """Generalised advantage estimation; dones[t] = the episode ended after step t
        (time-limit ends are bootstrapped into rewards by the trainer)."""
        advantage = torch.zeros_like(last_values)
        next_values = last_values
        for t in reversed(range(self.n_steps)):
            not_done = 1.0 - self.dones[t]
            delta = self.rewards[t] + gamma * next_values * not_done - self.values[t]
            advantage = delta + gamma * lam * not_done * advantage
            self.advantages[t] = advantage
            next_values = self.values[t]
        self.returns = self.advantages + self.values
        self.step = 0

    def minibatches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of shuffled minibatches of flattened transitions."""
        n = self.n_steps * self.n_envs
        flat = {
            "obs": self.obs.reshape(n, -1),
            "actions": self.actions.reshape(n, -1),
            "log_probs": self.log_probs.reshape(n),
            "values": self.values.reshape(n),
            "advantages": self.advantages.reshape(n),
            "returns": self.returns.reshape(n),
        }
        perm = torch.randperm(n, device=self.device if generator is None else generator.device, generator=generator).to(
            self.device
        )
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            yield {k: v[idx] for k, v in flat.items()}
