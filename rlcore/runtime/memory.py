"""The memory model: a run's peak device memory estimated from its sizes, before any work, so a
sweep prunes infeasible points and the train stage refuses (or shrinks) sizes that won't fit.
Shared by training (minibatch sizes), placement, the hardware stage and tuning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rlcore.config.schema import TrainConfig
from rlcore.robots.chain import Chain

FLOAT = 4  # bytes; nothing float64 on the device
OVERHEAD_MB = 16.0  # allocator rounding and small buffers


@dataclass
class MemoryEstimate:
    """Estimated peak device memory (MB), by part."""

    rollout_mb: float
    env_mb: float
    network_mb: float
    minibatch_mb: float
    overhead_mb: float

    @property
    def total_mb(self) -> float:
        return self.rollout_mb + self.env_mb + self.network_mb + self.minibatch_mb + self.overhead_mb

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in asdict(self).items()}, "total_mb": round(self.total_mb, 2)}


def minibatch_size(train: TrainConfig, n_envs: int) -> int:
    """Samples per minibatch: train.minibatch_size, else the rollout split into train.minibatches."""
    rollout = train.n_steps * n_envs
    if train.minibatch_size:
        return min(train.minibatch_size, rollout)
    return max(1, rollout // train.minibatches)


def estimate_memory(
    train: TrainConfig, chain: Chain, n_envs: int, batch: int | None = None, twin: bool = True, points: int = 0
) -> MemoryEstimate:
    """Peak device memory of training `chain`'s robot with n_envs and minibatch `batch` (MB), the
    envs on the device (`twin`) or in physics-engine workers; `points`: the twin's collision
    points in a workcell (rlcore.robots.collision.collision_points)."""
    dof = chain.dof
    obs_dim, act_dim = 3 * dof + 9, dof
    t = train
    batch = batch or minibatch_size(train, n_envs)
    # rollout storage: obs, actions and 6 per-sample scalars (log-prob, reward, done, value,
    # return, advantage), plus the flattened copies the update indexes into
    per_sample = obs_dim + act_dim + 6
    rollout = 2 * t.n_steps * n_envs * per_sample * FLOAT
    # batched env: state (q, qd, q_cmd, prev action, target, return) and a step's temporaries
    # (observation, FK rotations of each chain joint, substep velocities)
    env_floats = 4 * dof + 4 + 3 * obs_dim + len(chain.joints) * 24 + 4 * dof
    # a workcell: every point in the base frame and a box test's three temporaries of it (GPU path)
    env_floats += 4 * 3 * points
    env = n_envs * env_floats * FLOAT if twin else 3 * n_envs * obs_dim * FLOAT
    # network: weights, grads, Adam moments (x4)
    sizes_a = [obs_dim, *t.actor_hidden, act_dim]
    sizes_c = [obs_dim, *t.critic_hidden, 1]
    n_params = sum(a * b + b for sizes in (sizes_a, sizes_c) for a, b in zip(sizes, sizes[1:])) + act_dim
    network = 4 * n_params * FLOAT
    # minibatch: inputs and gathered targets, activations kept for backward (pre and post
    # activation per hidden layer) and their gradients
    hidden = sum(t.actor_hidden) + sum(t.critic_hidden)
    minibatch = batch * (per_sample + 2 * 2 * hidden + 4 * act_dim) * FLOAT
    # rollout-time inference over all envs (activations without autograd)
    inference = n_envs * (2 * hidden + obs_dim + 3 * act_dim) * FLOAT
    mb = 1024 * 1024
    return MemoryEstimate(rollout / mb, (env + inference) / mb, network / mb, minibatch / mb, OVERHEAD_MB)


def bytes_per_env(train: TrainConfig, chain: Chain, points: int = 0) -> float:
    """Marginal device memory of one more twin env (state, inference and rollout share)."""
    big, small = estimate_memory(train, chain, 2048, points=points), estimate_memory(train, chain, 1024, points=points)
    return (big.total_mb - small.total_mb) * 1024 * 1024 / 1024


def fit_to_limit(
    train: TrainConfig, chain: Chain, n_envs: int, limit_mb: float, twin: bool, points: int = 0
) -> tuple[int, int]:
    """The largest (n_envs, minibatch) under limit_mb, halving n_envs, then the minibatch."""
    batch = minibatch_size(train, n_envs)

    def total(n: int, b: int) -> float:
        return estimate_memory(train, chain, n, b, twin, points).total_mb

    while n_envs > 1 and total(n_envs, min(batch, train.n_steps * n_envs)) > limit_mb:
        n_envs //= 2
    batch = min(batch, train.n_steps * n_envs)
    while batch > 8 and total(n_envs, batch) > limit_mb:
        batch //= 2
    return n_envs, batch
