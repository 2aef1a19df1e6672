"""Training algorithms behind one interface and a registry: rlcore PPO, stable-baselines3's PPO, SAC and DQN."""
