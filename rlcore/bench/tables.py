"""Throughput tables: PyBullet vec envs, the batched twin, the PPO update, PPO on the twin."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import torch

from rlcore import devices, placement
from rlcore import hardware as hw
from rlcore.bench.rounds import MIN_ROUNDS, SINGLE, alternate, machine, single_env_fps, throughput, with_single_env
from rlcore.config import Params


def env_table(params: Params, n_envs_list: list[int], steps: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Raw PyBullet steps/s: one env, then SB3's Dummy and Subproc VecEnvs at each n_envs."""
    from rlcore.envs.vec import vec_env_fps  # PyBullet and SB3 only here: the twin's tables run without them

    measures: dict[Hashable, Callable[[], float]] = {SINGLE: lambda: single_env_fps(params, steps)}
    for kind in ("dummy", "subproc"):
        for n in n_envs_list:
            measures[(kind, n)] = lambda kind=kind, n=n: vec_env_fps(params, kind, n, steps)
    results = alternate(measures, rounds)
    rows = [{"kind": "single", "n_envs": 1, "fps": results[SINGLE].median, "spread": results[SINGLE]}]
    rows += [{"kind": k[0], "n_envs": k[1], "fps": v.median, "spread": v} for k, v in results.items() if k != SINGLE]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}


def batched_table(
    params: Params, devices: list[str], n_envs_list: list[int], steps: int = 30, rounds: int = MIN_ROUNDS
) -> dict[str, Any]:
    """Batched twin: env steps/s and device memory per env (where the device can tell)."""
    from rlcore.envs.batched import BatchedReachEnv

    measures: dict[Hashable, Callable[[], float]] = {}
    memory: dict[Hashable, float | None] = {}
    for spec in devices:
        device = devices.torch_device(spec)
        for n in n_envs_list:
            with devices.PeakMemory(device) as peak:
                env = BatchedReachEnv(params, None, n, device)
                env.reset()
                _time_batched(env, device, 3)
            memory[(spec, n)] = None if peak.peak_mb is None else peak.peak_mb * 1024 / n
            measures[(spec, n)] = lambda env=env, device=device, n=n: n / _time_batched(env, device, steps)
    results = alternate(with_single_env(params, measures), rounds)
    rows = [
        {"device": k[0], "n_envs": k[1], "fps": v.median, "spread": v, "memory_per_env_kb": memory[k]}
        for k, v in results.items()
        if k != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}


def _time_batched(env: Any, device: torch.device, steps: int) -> float:
    """Seconds per step of the batched twin (after a warm-up)."""
    actions = torch.zeros(env.num_envs, env.act_dim, device=device)
    for _ in range(3):
        env.step(actions)
    devices.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    devices.synchronize(device)
    return (time.perf_counter() - start) / steps


def update_table(params: Params, devices: list[str], n_envs: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Whole-PPO-update throughput (rollout samples/s) on each device, for a rollout of n_envs."""
    from rlcore.envs.task import obs_size
    from rlcore.memory import minibatch_size
    from rlcore.robots.chain import read_chain

    dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
    samples = n_envs * params.train.n_steps
    measures: dict[Hashable, Callable[[], float]] = {
        spec: lambda spec=spec: (
            samples / placement.time_update(devices.torch_device(spec), params, obs_size(dof), dof, n_envs)
        )
        for spec in devices
    }
    results = alternate(with_single_env(params, measures), rounds)
    rows = [
        {"device": spec, "minibatch": minibatch_size(params, n_envs), "samples_per_s": v.median, "spread": v}
        for spec, v in results.items()
        if spec != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}


def batched_ppo_table(
    params: Params, devices: list[str], n_envs_list: list[int], iterations: int = 8, rounds: int = MIN_ROUNDS
) -> dict[str, Any]:
    """End-to-end rlcore PPO steps/s on the batched twin (rollout + update, the configured
    network and epochs), per device and n_envs; each round trains `iterations` more updates of
    trainers built (and warmed up by one update) beforehand."""
    from rlcore.envs.batched import BatchedReachEnv
    from rlcore.ppo.trainer import Trainer

    measures: dict[Hashable, Callable[[], float]] = {}
    for spec in devices:
        device = devices.torch_device(spec)
        for n in n_envs_list:
            env = BatchedReachEnv(params, None, n, device)
            trainer = Trainer(params, env, device, hw.capabilities(device), None, 1)
            per_iter = params.train.n_steps * n
            trainer.train(progress=False, total_steps=per_iter)  # warm-up

            def run(trainer: Trainer = trainer, device: torch.device = device, per_iter: int = per_iter) -> float:
                devices.synchronize(device)
                start_step = trainer.global_step
                trainer.train(progress=False, total_steps=start_step + iterations * per_iter)
                devices.synchronize(device)
                return trainer.global_step - start_step

            measures[(spec, n)] = lambda run=run: throughput(run)
    results = alternate(with_single_env(params, measures), rounds)
    rows = [
        {"device": k[0], "n_envs": k[1], "ppo_fps": v.median, "spread": v} for k, v in results.items() if k != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}


def start_method_table(params: Params, n_envs: int = 64, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Seconds to start (and reset) n_envs PyBullet worker processes under each start method this
    OS has, one process per env (SB3's SubprocVecEnv); the fork server's first start, which
    imports everything once, falls in the first round."""
    from rlcore.envs.vec import make_vec_env
    from rlcore.oscompat import start_methods

    def start(method: str) -> float:
        hardware = params.hardware.model_copy(update={"mp_start_method": method})
        begin = time.perf_counter()
        venv, _ = make_vec_env(params.model_copy(update={"hardware": hardware}), None, n_envs, kind="subproc")
        venv.reset()
        seconds = time.perf_counter() - begin
        venv.close()
        return seconds

    results = alternate(with_single_env(params, {m: lambda m=m: start(m) for m in start_methods()}), rounds)
    rows = [
        {"method": m, "n_envs": n_envs, "start_s": v.median, "spread": v} for m, v in results.items() if m != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}
