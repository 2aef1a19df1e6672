"""train.compile: torch.compile of the twin's step and the policy's forward gives eager mode's
numbers, really compiles (dynamo's frame counters, not a silent fallback), stays off on the CPU
under `auto`, and fails clearly under `on`."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from rlcore.algos.ppo.trainer import Trainer
from rlcore.envs.batched import BatchedReachEnv
from rlcore.runtime import compiling
from rlcore.runtime.probes import capabilities

CPU = torch.device("cpu")


def compiled_frames() -> int:
    """Frames dynamo captured into graphs so far (a fallback to eager adds none)."""
    return counters["frames"]["ok"]


def tiny(params):
    train = params.train.model_copy(update={"n_steps": 8, "actor_hidden": [32, 32], "critic_hidden": [32, 32]})
    return params.model_copy(update={"train": train})


def test_compiled_twin_and_policy_match_eager(small_params, small_cache):
    params = tiny(small_params)
    eager_env = BatchedReachEnv(params.env, params.robot, small_cache, 64, CPU, seed=3)
    fast_env = BatchedReachEnv(params.env, params.robot, small_cache, 64, CPU, seed=3)
    before = compiled_frames()
    assert fast_env.compile("on") == "twin step: compiled"
    assert compiled_frames() > before, "torch.compile fell back to eager for the twin step"
    assert eager_env.compile("off").startswith("twin step: eager")

    obs_e, obs_f = eager_env.reset(), fast_env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(params.env.episode_steps + 5):  # across an episode boundary (reset inside step)
        a = torch.rand(64, eager_env.act_dim, generator=gen) * 2.4 - 1.2
        res_e, res_f = eager_env.step(a), fast_env.step(a)
        torch.testing.assert_close(res_f.obs, res_e.obs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(res_f.reward, res_e.reward, atol=1e-5, rtol=1e-5)
        assert torch.equal(res_f.done, res_e.done)
        obs_e, obs_f = res_e.obs, res_f.obs
    torch.testing.assert_close(obs_f, obs_e, atol=1e-5, rtol=1e-5)

    # the policy forward: the same means and values, before and after an update changes the weights
    on = params.model_copy(update={"train": params.train.model_copy(update={"compile": "on"})})
    env = BatchedReachEnv(on.env, on.robot, small_cache, 64, CPU)
    trainer = Trainer(on, env, CPU, capabilities(CPU), None, small_cache.n_levels)
    assert trainer.compile_notes == ["twin step: compiled", "policy forward: compiled"]
    obs = torch.randn(64, eager_env.obs_dim, generator=gen)
    for _ in range(2):
        with torch.no_grad():
            fast, eager = trainer.ppo._forward(obs), trainer.ppo.forward(obs)
        torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-5)
        trainer.train(progress=False, total_steps=trainer.global_step + 8 * 64)
    assert trainer.global_step == 2 * 8 * 64


def test_auto_compiles_only_where_the_device_says_it_works():
    assert not compiling.wants_compile("auto", CPU)  # inductor on a CPU needs a C++ compiler: opt in with `on`
    assert compiling.wants_compile("on", CPU)
    assert not compiling.wants_compile("off", CPU)
    fn, note = compiling.compiled(torch.sin, "auto", CPU, torch.zeros(2), what="x")
    assert fn is torch.sin and note == "x: eager (train.compile=auto on cpu)"


def test_a_failed_compile_stops_under_on_and_falls_back_under_auto(monkeypatch):
    def broken(*_args, **_kwargs):
        def call(*_a):
            raise RuntimeError("backend compiler failed\nlong traceback")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiling, "wants_compile", lambda setting, device: setting != "off")
    with pytest.raises(
        compiling.CompileError,
        match=r"^train.compile=on: torch.compile of the twin step failed on "
        r"cpu: backend compiler failed \(set train.compile to auto or off\)$",
    ):
        compiling.compiled(torch.sin, "on", CPU, torch.zeros(2), what="twin step")
    fn, note = compiling.compiled(torch.sin, "auto", CPU, torch.zeros(2), what="twin step")
    assert fn is torch.sin and note == "twin step: eager (torch.compile failed: backend compiler failed)"
