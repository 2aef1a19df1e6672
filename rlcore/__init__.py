"""rlcore: reproducible PPO training of robot-arm reaching policies on any accelerator.

Importing rlcore registers its gymnasium envs (`rlcore/FanucReach-v0`, `rlcore/FanucReach-MuJoCo-v0`),
so `gym.make("rlcore:rlcore/FanucReach-v0")` and rl-zoo3's `--gym-packages rlcore` find them. Where
gymnasium is absent (a robot PC with the ONNX controller alone), nothing is registered.
"""

__version__ = "0.2.0"

try:
    import gymnasium as _gymnasium  # noqa: F401
except ImportError:  # the torch-free controller's install: numpy and onnxruntime only
    pass
else:
    from rlcore import envs as _envs  # noqa: F401 - registers the envs
