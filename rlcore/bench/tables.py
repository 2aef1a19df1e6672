"""Throughput tables: PyBullet vec envs, the batched twin, the PPO update, PPO on the twin."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import torch

from rlcore.bench.rounds import MIN_ROUNDS, SINGLE, alternate, machine, single_env_fps, throughput, with_single_env
from rlcore.config.schema import Params
from rlcore.pipeline import placement
from rlcore.runtime import probes as hw
from rlcore.runtime.devices import PeakMemory, synchronize, torch_device


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
    return {"rows": rows, "rounds": rounds, "machine": machine(results, params)}


def vec_table(params: Params, n_envs: int, steps: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Raw steps/s of the training backend's vector envs at n_envs (random actions, start-up
    excluded): shared memory, SB3 SubprocVecEnv pipes over the same chunks, and one in-process
    chunk, each with its parallel efficiency (steps/s / (cores x single-env steps/s))."""
    from rlcore.envs.shared_vec import make_physics_vec_env
    from rlcore.runtime.oscompat import cpu_list

    cores = len(cpu_list())
    envs = {}
    for kind in ("shared", "subproc", "dummy"):
        config = params.model_copy(update={"train": params.train.model_copy(update={"vec_env": kind})})
        envs[kind] = make_physics_vec_env(config, None, n_envs, torch.device("cpu"))
    try:
        for env in envs.values():
            env.reset()
        generator = torch.Generator().manual_seed(0)
        actions = torch.rand(64, n_envs, envs["shared"].act_dim, generator=generator) * 2 - 1
        iters = max(1, steps // n_envs)

        def measure(env: Any) -> Callable[[], float]:
            def run() -> float:
                for i in range(iters):
                    env.step(actions[i % len(actions)])
                return iters * n_envs

            return lambda: throughput(run)

        results = alternate(with_single_env(params, {k: measure(e) for k, e in envs.items()}), rounds)
    finally:
        for env in envs.values():
            env.close()
    single = results[SINGLE].median
    rows = [
        {
            "kind": kind,
            "note": envs[kind].note,
            "n_envs": n_envs,
            "fps": results[kind].median,
            "spread": results[kind],
            "efficiency": results[kind].median / (cores * single),
        }
        for kind in envs
    ]
    return {"rows": rows, "rounds": rounds, "cores": cores, "machine": machine(results, params)}


def batched_table(
    params: Params, devices: list[str], n_envs_list: list[int], steps: int = 30, rounds: int = MIN_ROUNDS
) -> dict[str, Any]:
    """Batched twin: env steps/s and device memory per env (where the device can tell)."""
    from rlcore.envs.batched import BatchedReachEnv

    measures: dict[Hashable, Callable[[], float]] = {}
    memory: dict[Hashable, float | None] = {}
    for spec in devices:
        device = torch_device(spec)
        for n in n_envs_list:
            with PeakMemory(device) as peak:
                env = BatchedReachEnv(params.env, params.robot, None, n, device)
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
    return {"rows": rows, "rounds": rounds, "machine": machine(results, params)}


def _time_batched(env: Any, device: torch.device, steps: int) -> float:
    """Seconds per step of the batched twin (after a warm-up)."""
    actions = torch.zeros(env.num_envs, env.act_dim, device=device)
    for _ in range(3):
        env.step(actions)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def update_table(params: Params, devices: list[str], n_envs: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Whole-PPO-update throughput (rollout samples/s) on each device, for a rollout of n_envs,
    with the GFLOP/s it achieves beside the device's fp32 torch.mm peak, measured in the same
    alternating rounds."""
    from rlcore.bench.flops import matmul_peak_gflops, update_flops_per_sample
    from rlcore.envs.task import obs_size
    from rlcore.robots.chain import read_chain
    from rlcore.runtime.memory import minibatch_size

    dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
    samples = n_envs * params.train.n_steps
    flops = update_flops_per_sample(params, obs_size(dof), dof)
    measures: dict[Hashable, Callable[[], float]] = {}
    for spec in devices:
        device = torch_device(spec)
        measures[spec] = lambda d=device: samples / placement.time_update(d, params, obs_size(dof), dof, n_envs)
        measures[("matmul", spec)] = lambda d=device: matmul_peak_gflops(d)
    results = alternate(with_single_env(params, measures), rounds)
    rows = []
    for spec in devices:
        rate, peak = results[spec], results[("matmul", spec)]
        gflops = rate.median * flops / 1e9
        rows.append(
            {
                "device": spec,
                "minibatch": minibatch_size(params.train, n_envs),
                "samples_per_s": rate.median,
                "spread": rate,
                "flops_per_sample": flops,
                "gflops": gflops,
                "matmul_peak_gflops": peak.median,
                "matmul_spread": peak,
                "share_of_peak": gflops / peak.median,
            }
        )
    return {"rows": rows, "rounds": rounds, "n_envs": n_envs, "machine": machine(results, params)}


def batched_ppo_table(
    params: Params, devices: list[str], n_envs_list: list[int], iterations: int = 8, rounds: int = MIN_ROUNDS
) -> dict[str, Any]:
    """End-to-end rlcore PPO steps/s on the batched twin (rollout + update, the configured
    network and epochs), per device and n_envs; each round trains `iterations` more updates of
    trainers built (and warmed up by one update) beforehand."""

    measures: dict[Hashable, Callable[[], float]] = {}
    for spec in devices:
        for n in n_envs_list:
            measures[(spec, n)] = _ppo_measure(params, torch_device(spec), n, iterations)
    results = alternate(with_single_env(params, measures), rounds)
    rows = [
        {"device": k[0], "n_envs": k[1], "ppo_fps": v.median, "spread": v} for k, v in results.items() if k != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results, params)}


def _ppo_measure(params: Params, device: torch.device, n_envs: int, iterations: int) -> Callable[[], float]:
    """A measure of rlcore PPO's steps/s on the twin: a trainer built and warmed up by one update
    now; each call trains `iterations` more updates."""
    from rlcore.algos.ppo.trainer import Trainer
    from rlcore.envs.batched import BatchedReachEnv

    env = BatchedReachEnv(params.env, params.robot, None, n_envs, device)
    trainer = Trainer(params, env, device, hw.capabilities(device), None, 1)
    per_iter = params.train.n_steps * n_envs
    trainer.train(progress=False, total_steps=per_iter)  # warm-up

    def run() -> float:
        synchronize(device)
        start_step = trainer.global_step
        trainer.train(progress=False, total_steps=start_step + iterations * per_iter)
        synchronize(device)
        return trainer.global_step - start_step

    return lambda: throughput(run)


def compile_table(params: Params, spec: str, n_envs_list: list[int], rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """train.compile off against on, on one device: the twin's env steps/s and end-to-end PPO
    steps/s at each n_envs, in alternating rounds (compilation happens before the rounds)."""
    from rlcore.envs.batched import BatchedReachEnv

    device = torch_device(spec)
    measures: dict[Hashable, Callable[[], float]] = {}
    for n in n_envs_list:
        for setting in ("off", "on"):
            with_setting = params.model_copy(update={"train": params.train.model_copy(update={"compile": setting})})
            env = BatchedReachEnv(with_setting.env, with_setting.robot, None, n, device)
            env.compile(setting)
            env.reset()
            measures[("twin", setting, n)] = lambda env=env, n=n: n / _time_batched(env, device, 30)
            measures[("ppo", setting, n)] = _ppo_measure(with_setting, device, n, iterations=4)
    results = alternate(with_single_env(params, measures), rounds)
    rows = []
    for n in n_envs_list:
        for what in ("twin", "ppo"):
            off, on = results[(what, "off", n)], results[(what, "on", n)]
            rows.append(
                {
                    "what": what,
                    "n_envs": n,
                    "eager": off.median,
                    "compiled": on.median,
                    "speedup": on.median / off.median,
                    "spread_eager": off,
                    "spread_compiled": on,
                }
            )
    return {"device": spec, "rows": rows, "rounds": rounds, "machine": machine(results, params)}


def start_method_table(params: Params, n_envs: int = 64, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Seconds to start (and reset) n_envs PyBullet worker processes under each start method this
    OS has, one process per env (SB3's SubprocVecEnv); the fork server's first start, which
    imports everything once, falls in the first round."""
    from rlcore.envs.vec import make_vec_env
    from rlcore.runtime.oscompat import start_methods

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
    return {"rows": rows, "rounds": rounds, "machine": machine(results, params)}
