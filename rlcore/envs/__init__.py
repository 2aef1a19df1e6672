"""Reach environments: PyBullet and MuJoCo (gymnasium), and the batched on-device twin."""

import gymnasium as gym

ENV_ID = "rlcore/FanucReach-v0"  # PyBullet
MUJOCO_ENV_ID = "rlcore/FanucReach-MuJoCo-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlcore.envs.bullet:ReachEnv")
if MUJOCO_ENV_ID not in gym.registry:
    gym.register(id=MUJOCO_ENV_ID, entry_point="rlcore.envs.mujoco_reach:MujocoReachEnv")
