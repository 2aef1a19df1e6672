"""A resumed run equals an uninterrupted one on the twin backend (CPU): parameters, optimizer
state, normaliser, curriculum, env episodes and the learning curve, bitwise."""

from __future__ import annotations

import torch

from rlcore.algos.ppo.trainer import Trainer
from rlcore.config.schema import Params
from rlcore.envs.factory import make_env
from rlcore.runtime import devices
from rlcore.runtime import probes as hw

CPU = torch.device("cpu")
TIMING = {"wall_s", "fps", "rollout_s", "update_s", "peak_memory_mb", "cpu_threads"}  # machine readings
N_ENVS, UPDATES, KILLED_AT = 64, 8, 3


def params(small_params: Params) -> Params:
    return small_params.model_copy(
        update={
            "train": small_params.train.model_copy(
                update={
                    "n_envs": N_ENVS,
                    "actor_hidden": [32, 32],
                    "critic_hidden": [32, 32],
                    "checkpoint_every": 1,
                    "total_steps": N_ENVS * 16 * UPDATES,
                }
            ),
            "env": small_params.env.model_copy(
                update={"curriculum": small_params.env.curriculum.model_copy(update={"window": 64})}
            ),
        }
    )


def trainer(p: Params, cache, ckpt_dir) -> Trainer:
    env = make_env(p, cache, N_ENVS, CPU, p.seed)
    return Trainer(p, env, CPU, hw.capabilities(CPU), ckpt_dir, cache.n_levels)


def same(a, b, path="state") -> None:
    """Recursive bitwise equality of checkpoint contents."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), (path, a, b)  # NaN == NaN here


def test_resumed_run_equals_uninterrupted_bitwise(tmp_path, small_params, small_cache):
    torch.set_num_threads(devices.cpu_cores())
    p = params(small_params)
    whole = trainer(p, small_cache, tmp_path / "whole")
    whole.train(progress=False)
    expected = whole.state_dict()

    first = trainer(p, small_cache, tmp_path / "cut")
    first.train(progress=False, total_steps=N_ENVS * 16 * KILLED_AT)  # checkpoint k = 3, then "killed"
    torch.manual_seed(1234)  # a new process's state: the checkpoint must restore what matters
    resumed = trainer(p, small_cache, tmp_path / "cut")
    assert "resumed" in (resumed.try_resume() or "")
    assert resumed.global_step == N_ENVS * 16 * KILLED_AT
    resumed.train(progress=False)
    got = resumed.state_dict()

    for key in ("model", "optimizer", "norm", "curriculum", "env", "env_rng", "torch_rng", "global_step"):
        same(expected[key], got[key], key)
    assert len(got["history"]) == len(expected["history"]) == UPDATES
    for i, (a, b) in enumerate(zip(expected["history"], got["history"])):  # the learning curve
        same({k: v for k, v in a.items() if k not in TIMING}, {k: v for k, v in b.items() if k not in TIMING}, i)


def test_env_state_round_trips(small_params, small_cache):
    p = params(small_params)
    env = make_env(p, small_cache, 8, CPU, 0)
    env.reset()
    for _ in range(5):
        env.step(torch.rand(8, env.act_dim) * 2 - 1)
    state = env.state_dict()
    twin = make_env(p, small_cache, 8, CPU, 99)
    twin.load_state_dict(state)
    actions = torch.rand(8, env.act_dim) * 2 - 1
    for _ in range(70):  # across an episode end: the same resets and new targets
        a, b = env.step(actions), twin.step(actions)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward) and bool(a.done[0]) == bool(b.done[0])
