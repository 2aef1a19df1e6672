"""stable-baselines3's PPO, SAC and DQN on the physics envs, as rlcore algorithms."""
