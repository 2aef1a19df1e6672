"""On-device PPO: storage, the update, its Adam, and the training loop."""
