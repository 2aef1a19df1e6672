"""On-device PPO: policy (actor-critic + observation normaliser), storage, algorithm, trainer."""
