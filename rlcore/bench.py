"""Throughput measurements that hold on a noisy machine, and training seeds:
`python -m rlcore.bench {envs,batched,batched-ppo,ppo,seeds,all}`.

- envs:    raw PyBullet steps/s: one env, and SB3 DummyVecEnv / SubprocVecEnv over n_envs
- batched: the batched twin's env steps/s and memory per env, on each usable device
- batched-ppo: end-to-end rlcore PPO steps/s on the batched twin, per device and n_envs
- ppo:     end-to-end steps/s of rlcore PPO and SB3 PPO on the same PyBullet env and
           hyperparameters, with the ratio, each side's parallel efficiency, and where rlcore's
           time goes
- seeds:   N training seeds of the current params: held-out success with intervals, time to 95%
           (rlcore.seeds)

Every throughput figure is the median of >= 3 rounds that alternate between the things compared
(A B C, A B C, ...), so a slow spell of a shared machine lands on all of them; each comes with its
spread and with the machine's single-env PyBullet steps/s, measured in the same rounds. All at the
training physics of params.yaml. The report stage calls the same functions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore import hardware as hw
from rlcore import placement
from rlcore.config import Params, load_params
from rlcore.envs.vec import faster_vec_env, make_vec_env, vec_env_fps
from rlcore.stats import Spread

MIN_ROUNDS = 3
SINGLE = "single env"  # the key of the machine's single-env PyBullet steps/s in every table


def throughput(run: Callable[[], float], clock: Callable[[], float] = time.perf_counter) -> float:
    """Work per second of one call of `run`, which does the work and returns how much (steps)."""
    start = clock()
    work = run()
    return work / (clock() - start)


def alternate(measures: dict[Hashable, Callable[[], float]], rounds: int) -> dict[Hashable, Spread]:
    """Call every measure once per round, in the same order each round; each figure is the
    median over the rounds, with its spread."""
    results: dict[Hashable, Spread] = {key: Spread() for key in measures}
    for _ in range(rounds):
        for key, measure in measures.items():
            results[key].runs.append(float(measure()))
    return results


def single_env_fps(params: Params, steps: int = 3000, seed: int = 0) -> float:
    """Raw steps/s of one ReachEnv (random actions, resets included), start-up excluded."""
    from rlcore.envs.bullet import ReachEnv

    env = ReachEnv(params)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, env.dof)).astype(np.float32)

    def run() -> int:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return steps

    try:
        return throughput(run)
    finally:
        env.close()


def with_single_env(params: Params, measures: dict[Hashable, Callable[[], float]], steps: int = 2000) -> dict:
    """The measures plus the machine's single-env PyBullet steps/s (where pybullet is installed)."""
    try:
        import pybullet  # noqa: F401
    except ImportError:
        return measures
    return {**measures, SINGLE: lambda: single_env_fps(params, steps)}


def machine(results: dict[Hashable, Spread]) -> dict[str, Any]:
    """The machine line beside every table: cores and single-env steps/s (median, spread)."""
    single = results.get(SINGLE)
    return {"cores": hw.cpu_cores(), "single_env": single.to_dict() if single else None}


def machine_text(info: dict[str, Any]) -> str:
    single = info["single_env"]
    if single is None:
        return f"machine: {info['cores']} cores (pybullet not installed: no single-env figure)"
    spread = Spread(single["runs"])
    return f"machine: {info['cores']} cores, single-env PyBullet {spread.text()} steps/s"


def env_table(params: Params, n_envs_list: list[int], steps: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Raw PyBullet steps/s: one env, then SB3's Dummy and Subproc VecEnvs at each n_envs."""
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
        device = hw.torch_device(spec)
        for n in n_envs_list:
            with hw.PeakMemory(device) as peak:
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
    hw.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    hw.synchronize(device)
    return (time.perf_counter() - start) / steps


def update_table(params: Params, devices: list[str], n_envs: int, rounds: int = MIN_ROUNDS) -> dict[str, Any]:
    """Whole-PPO-update throughput (rollout samples/s) on each device, for a rollout of n_envs."""
    from rlcore.envs.bullet import obs_size
    from rlcore.robots.chain import read_chain
    from rlcore.tuning import minibatch_size

    dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
    samples = n_envs * params.train.n_steps
    measures: dict[Hashable, Callable[[], float]] = {
        spec: lambda spec=spec: (
            samples / placement.time_update(hw.torch_device(spec), params, obs_size(dof), dof, n_envs)
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


def rlcore_fps(params: Params, n_envs: int, steps: int) -> tuple[float, dict[str, float]]:
    """End-to-end rlcore PPO steps/s on PyBullet (env start-up excluded), and its time split."""
    from rlcore.ppo.trainer import Trainer, make_env
    from rlcore.runs import cpu_threads

    device = torch.device("cpu")
    threads = torch.get_num_threads()
    cpu_threads(params)  # as the train stage does
    env = make_env(params, None, n_envs, device, params.seed)
    try:
        trainer = Trainer(params, env, device, hw.capabilities(device), None, 1)
        summary = trainer.train(progress=False, total_steps=steps)
        split = _time_split(trainer)
    finally:
        env.close()
        torch.set_num_threads(threads)
    return summary["fps"], split


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
        device = hw.torch_device(spec)
        for n in n_envs_list:
            env = BatchedReachEnv(params, None, n, device)
            trainer = Trainer(params, env, device, hw.capabilities(device), None, 1)
            per_iter = params.train.n_steps * n
            trainer.train(progress=False, total_steps=per_iter)  # warm-up

            def run(trainer: Trainer = trainer, device: torch.device = device, per_iter: int = per_iter) -> float:
                hw.synchronize(device)
                start_step = trainer.global_step
                trainer.train(progress=False, total_steps=start_step + iterations * per_iter)
                hw.synchronize(device)
                return trainer.global_step - start_step

            measures[(spec, n)] = lambda run=run: throughput(run)
    results = alternate(with_single_env(params, measures), rounds)
    rows = [
        {"device": k[0], "n_envs": k[1], "ppo_fps": v.median, "spread": v} for k, v in results.items() if k != SINGLE
    ]
    return {"rows": rows, "rounds": rounds, "machine": machine(results)}


def _time_split(trainer: Any) -> dict[str, float]:
    """Seconds per rollout step spent in the env, in policy inference, and per-step share of the update."""
    env = trainer.env
    obs = env.reset()
    t_env = t_inf = 0.0
    n = trainer.cfg.n_steps
    for _ in range(n):
        t0 = time.perf_counter()
        actions = trainer.ppo.act(trainer._normalise(obs, update=True))[0]
        t1 = time.perf_counter()
        obs = env.step(actions).obs
        t2 = time.perf_counter()
        t_inf += t1 - t0
        t_env += t2 - t1
    update_s = float(np.mean([row["update_s"] for row in trainer.history]))
    return {"env_s": t_env / n, "inference_s": t_inf / n, "update_s": update_s / n}


def sb3_fps(params: Params, n_envs: int, steps: int, kind: str) -> float:
    """End-to-end SB3 PPO steps/s on the same env and hyperparameters (env start-up excluded)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from rlcore.baseline import sb3_model

    venv, _ = make_vec_env(params, None, n_envs, kind=kind, seed=params.seed)
    venv = VecNormalize(venv, norm_obs=params.train.obs_norm, norm_reward=False, clip_obs=10.0)
    try:
        model = sb3_model(params, venv)
        start = time.perf_counter()
        model.learn(steps)
        return model.num_timesteps / (time.perf_counter() - start)
    finally:
        venv.close()


def compare_ppo(
    params: Params, n_envs: int, steps: int, rounds: int = MIN_ROUNDS, sb3_kind: str | None = None
) -> dict[str, Any]:
    """rlcore vs SB3 PPO on the PyBullet backend with identical settings, in alternating rounds
    (rlcore, SB3, single env), with each side's parallel efficiency: training steps/s divided by
    cores x single-env steps/s, a figure that carries between machines.

    SB3 gets its best vec env: measured here (Dummy vs Subproc at n_envs) unless given. Both run
    a constant learning rate without the KL early stop, so both do the same gradient steps (SB3
    has no KL-adaptive schedule, and an early stop would make the work differ)."""
    params = params.model_copy(
        update={
            "env": params.env.model_copy(update={"backend": "bullet"}),
            "train": params.train.model_copy(update={"lr_schedule": "constant", "target_kl": None}),
        }
    )
    sb3_kind = sb3_kind or faster_vec_env(params, n_envs)
    splits: list[dict[str, float]] = []

    def ours() -> float:
        fps, split = rlcore_fps(params, n_envs, steps)
        splits.append(split)
        return fps

    results = alternate(
        {
            "rlcore": ours,
            "sb3": lambda: sb3_fps(params, n_envs, steps, sb3_kind),
            SINGLE: lambda: single_env_fps(params),
        },
        rounds,
    )
    rl, sb, single = results["rlcore"], results["sb3"], results[SINGLE]
    cores = hw.cpu_cores()
    return {
        "fps_rlcore": rl.median,
        "fps_sb3": sb.median,
        "ratio_rlcore_vs_sb3": rl.median / sb.median,
        "ratio_runs": Spread([a / b for a, b in zip(rl.runs, sb.runs)]),
        "rlcore": rl,
        "sb3": sb,
        "fps_single_env": single.median,
        "single_env": single,
        "cores": cores,
        "efficiency_rlcore": rl.median / (cores * single.median),
        "efficiency_sb3": sb.median / (cores * single.median),
        "sb3_vec_env": sb3_kind,
        "rlcore_vec_env": params.train.vec_env,
        "n_envs": n_envs,
        "steps_per_run": steps,
        "rounds": rounds,
        "time_split_per_step": {k: float(np.mean([s[k] for s in splits])) for k in splits[0]},
    }


def ppo_text(r: dict[str, Any]) -> list[str]:
    """The comparison as printed lines (the bench command and the report's log)."""
    s = r["time_split_per_step"]
    return [
        f"PPO end to end on PyBullet, {r['n_envs']} envs, {r['steps_per_run']} steps per run, "
        f"median of {r['rounds']} alternating rounds (min-max, spread = (max-min)/median)",
        f"  rlcore ({r['rlcore_vec_env']} chunked vec env): {r['rlcore'].text()} steps/s, "
        f"parallel efficiency {r['efficiency_rlcore']:.2f}",
        f"  sb3    ({r['sb3_vec_env']}): {r['sb3'].text()} steps/s, parallel efficiency {r['efficiency_sb3']:.2f}",
        f"  ratio rlcore / sb3: {r['ratio_rlcore_vs_sb3']:.2f}x (per round: {r['ratio_runs'].text('.2f')})",
        f"  {machine_text({'cores': r['cores'], 'single_env': r['single_env'].to_dict()})}",
        "  parallel efficiency = steps/s / (cores x single-env steps/s)",
        f"  rlcore time per rollout step: env {s['env_s'] * 1e3:.2f} ms, "
        f"inference {s['inference_s'] * 1e3:.2f} ms, update {s['update_s'] * 1e3:.2f} ms",
    ]


def usable_devices() -> list[str]:
    return [p.device for p in hw.probe_all() if p.usable]


def rounds_arg(text: str) -> int:
    """An argparse type: a number of rounds, at least MIN_ROUNDS (a median of fewer is no median)."""
    from rlcore.cli import positive_int

    value = positive_int(text)
    if value < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(
            f"must be >= {MIN_ROUNDS} (a median needs rounds to be taken over), got {value}"
        )
    return value


def print_table(title: str, table: dict[str, Any], columns: list[tuple[str, str, str]]) -> None:
    """One table: a column per (header, row key, format), the figure's spread, the machine line."""
    print(f"{title} (median of {table['rounds']} alternating rounds; spread = (max-min)/median)")
    print("  ".join(f"{h:>12}" for h, _, _ in columns) + f"  {'spread':>7}")
    for r in table["rows"]:
        cells = ["n/a" if r[key] is None else f"{r[key]:{fmt}}" for _, key, fmt in columns]
        print("  ".join(f"{c:>12}" for c in cells) + f"  {r['spread'].spread:>7.0%}")
    print(machine_text(table["machine"]))
    print()


def main(argv: list[str] | None = None) -> None:
    from rlcore.cli import positive_int, stage_parser
    from rlcore.config import ConfigError

    parser = stage_parser(__doc__)
    parser.prog, parser.formatter_class = "python -m rlcore.bench", argparse.RawDescriptionHelpFormatter
    parser.add_argument("what", choices=["envs", "batched", "batched-ppo", "ppo", "seeds", "all"])
    parser.add_argument("--n-envs", type=positive_int, nargs="+", default=None, help="n_envs to sweep")
    parser.add_argument("--steps", type=positive_int, default=None, help="steps per measurement")
    parser.add_argument("--rounds", type=rounds_arg, default=MIN_ROUNDS, help=f"alternating rounds (>= {MIN_ROUNDS})")
    from rlcore.seeds import add_arguments, run_command

    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides) if Path(args.params).exists() else Params()
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    if args.what == "seeds":
        run_command(args, params)
        return
    if args.what in ("envs", "all"):
        table = env_table(params, args.n_envs or [1, 2, 4, 8], args.steps or 4000, args.rounds)
        print_table(
            "PyBullet env steps/s",
            table,
            [("vec env", "kind", "s"), ("n_envs", "n_envs", "d"), ("steps/s", "fps", ",.0f")],
        )
    devices = usable_devices() if args.what in ("batched", "batched-ppo", "all") else []
    if args.what in ("batched", "all"):
        table = batched_table(params, devices, args.n_envs or [256, 4096, 16384], rounds=args.rounds)
        cols = [
            ("device", "device", "s"),
            ("n_envs", "n_envs", "d"),
            ("env steps/s", "fps", ",.0f"),
            ("KB/env", "memory_per_env_kb", ".2f"),
        ]
        print_table("Batched twin env steps/s", table, cols)
    if args.what in ("batched-ppo", "all"):
        table = batched_ppo_table(params, devices, args.n_envs or [256, 4096, 16384], rounds=args.rounds)
        cols = [("device", "device", "s"), ("n_envs", "n_envs", "d"), ("PPO steps/s", "ppo_fps", ",.0f")]
        print_table("rlcore PPO on the batched twin, end to end (rollout + update)", table, cols)
    if args.what in ("ppo", "all"):
        n = (args.n_envs or [params.hardware.n_envs_bullet or hw.BULLET_ENVS])[0]
        for line in ppo_text(compare_ppo(params, n, args.steps or 8192, args.rounds)):
            print(line)


if __name__ == "__main__":
    main()
