"""rlcore: reproducible PPO training of robot-arm reaching policies on any accelerator."""

__version__ = "0.1.0"
