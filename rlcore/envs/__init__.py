"""Reach environments: PyBullet (reference) and, later, the batched on-device twin."""

import gymnasium as gym

ENV_ID = "rlcore/FanucReach-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlcore.envs.bullet:ReachEnv")
