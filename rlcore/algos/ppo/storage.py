"""Rollout storage preallocated on the device, with GAE vectorised across envs.

Every per-transition field is a column block of one (n_steps, n_envs, width) tensor, so an epoch's
shuffle is a single gather and a minibatch is a slice: no per-field indexing kernels.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

SCALARS = ("log_probs", "values", "advantages", "returns", "rewards", "dones")
BATCH_FIELDS = ("obs", "actions", "log_probs", "values", "advantages", "returns")


class RolloutStorage:
    """n_steps x n_envs transitions; observations are stored already normalised."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        self.n_steps, self.n_envs, self.device = n_steps, n_envs, device
        widths = {"obs": obs_dim, "actions": act_dim, **{k: 1 for k in SCALARS}}
        self.columns: dict[str, slice] = {}
        start = 0
        for name, width in widths.items():
            self.columns[name] = slice(start, start + width)
            start += width
        self.data = torch.zeros(n_steps, n_envs, start, device=device, dtype=torch.float32)
        self.obs = self.data[..., self.columns["obs"]]
        self.actions = self.data[..., self.columns["actions"]]
        for name in SCALARS:
            setattr(self, name, self.data[..., self.columns[name].start])
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
        self.returns.copy_(self.advantages + self.values)
        self.step = 0

    def normalise_advantages(self) -> None:
        """Zero mean, unit standard deviation over the whole rollout (in place)."""
        adv = self.advantages
        adv.copy_((adv - adv.mean()) / (adv.std() + 1e-8))

    def minibatches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of shuffled minibatches of flattened transitions (fields as views)."""
        n = self.n_steps * self.n_envs
        perm = torch.randperm(n, device=self.device if generator is None else generator.device, generator=generator)
        shuffled = self.data.reshape(n, -1)[perm.to(self.device)]
        for start in range(0, n - batch_size + 1, batch_size):
            rows = shuffled[start : start + batch_size]
            yield {k: rows[:, self.columns[k].start if k in SCALARS else self.columns[k]] for k in BATCH_FIELDS}
