"""Throughput measurements, printed as tables: `python -m rlcore.bench {envs,batched,ppo,all}`.

- envs:    raw PyBullet steps/s: one env, and SB3 DummyVecEnv / SubprocVecEnv over n_envs
- batched: the batched twin's env steps/s and memory per env, on each usable device
- batched-ppo: end-to-end rlcore PPO steps/s on the batched twin, per device and n_envs
- ppo:     end-to-end steps/s of rlcore PPO and SB3 PPO on the same PyBullet env and
           hyperparameters, run alternately, with the ratio; and where rlcore's time goes
All at the training physics of params.yaml. The report stage calls the same functions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore import hardware as hw
from rlcore import placement
from rlcore.config import Params, load_params
from rlcore.envs.bullet import ReachEnv
from rlcore.envs.vec import make_vec_env


def single_env_fps(params: Params, steps: int = 3000, seed: int = 0) -> float:
    """Raw steps/s of one ReachEnv (random actions, resets included)."""
    env = ReachEnv(params)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, env.dof)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    fps = steps / (time.perf_counter() - start)
    env.close()
    return fps


def vec_env_fps(params: Params, kind: str, n_envs: int, steps: int = 3000, seed: int = 0) -> float:
    """Steps/s (summed over envs) of an SB3 VecEnv of n_envs ReachEnvs, start-up excluded."""
    venv, _ = make_vec_env(params, None, n_envs, kind=kind, seed=seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    n_iters = max(1, steps // n_envs)
    actions = rng.uniform(-1, 1, (n_iters, n_envs, venv.action_space.shape[0])).astype(np.float32)
    venv.step(actions[0])  # warm-up
    start = time.perf_counter()
    for a in actions:
        venv.step(a)
    fps = n_iters * n_envs / (time.perf_counter() - start)
    venv.close()
    return fps


def faster_vec_env(params: Params, n_envs: int, steps: int = 2000) -> str:
    """SB3's faster vec env for n_envs on this machine, measured: "dummy" or "subproc"."""
    dummy = vec_env_fps(params, "dummy", n_envs, steps)
    sub = vec_env_fps(params, "subproc", n_envs, steps) if n_envs > 1 else 0.0
    return "dummy" if dummy >= sub else "subproc"


def env_table(params: Params, n_envs_list: list[int], steps: int) -> list[dict[str, Any]]:
    rows = [{"kind": "single", "n_envs": 1, "fps": single_env_fps(params, steps)}]
    for kind in ("dummy", "subproc"):
        for n in n_envs_list:
            rows.append({"kind": kind, "n_envs": n, "fps": vec_env_fps(params, kind, n, steps)})
    return rows


def batched_table(params: Params, devices: list[str], n_envs_list: list[int], steps: int = 30) -> list[dict[str, Any]]:
    """Batched twin: env steps/s and device memory per env (where the device can tell)."""
    from rlcore.envs.batched import BatchedReachEnv

    rows = []
    for spec in devices:
        device = hw.torch_device(spec)
        for n in n_envs_list:
            with hw.PeakMemory(device) as peak:
                env = BatchedReachEnv(params, None, n, device)
                env.reset()
                seconds = _time_batched(env, device, steps)
            per_env_kb = None if peak.peak_mb is None else peak.peak_mb * 1024 / n
            rows.append({"device": spec, "n_envs": n, "fps": n / seconds, "memory_per_env_kb": per_env_kb})
    return rows


def _time_batched(env: Any, device: torch.device, steps: int) -> float:
    actions = torch.zeros(env.num_envs, env.act_dim, device=device)
    for _ in range(3):
        env.step(actions)
    hw.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    hw.synchronize(device)
    return (time.perf_counter() - start) / steps


def update_table(params: Params, devices: list[str], n_envs: int) -> list[dict[str, Any]]:
    """Whole-PPO-update throughput (rollout samples/s) on each device, for a rollout of n_envs."""
    from rlcore.envs.bullet import obs_size
    from rlcore.robots.chain import read_chain
    from rlcore.tuning import minibatch_size

    dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
    samples = n_envs * params.train.n_steps
    rows = []
    for spec in devices:
        seconds = placement.time_update(hw.torch_device(spec), params, obs_size(dof), dof, n_envs)
        rows.append({"device": spec, "minibatch": minibatch_size(params, n_envs), "samples_per_s": samples / seconds})
    return rows


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


def batched_ppo_table(params: Params, devices: list[str], n_envs_list: list[int], iterations: int = 8) -> list[dict]:
    """End-to-end rlcore PPO steps/s on the batched twin (rollout + update, the configured
    network and epochs), per device and n_envs; one warm-up update is excluded."""
    from rlcore.ppo.trainer import Trainer

    rows = []
    for spec in devices:
        device = hw.torch_device(spec)
        for n in n_envs_list:
            from rlcore.envs.batched import BatchedReachEnv

            env = BatchedReachEnv(params, None, n, device)
            trainer = Trainer(params, env, device, hw.capabilities(device), None, 1)
            per_iter = params.train.n_steps * n
            trainer.train(progress=False, total_steps=per_iter)  # warm-up
            start_step = trainer.global_step
            hw.synchronize(device)
            start = time.perf_counter()
            trainer.train(progress=False, total_steps=start_step + iterations * per_iter)
            hw.synchronize(device)
            fps = (trainer.global_step - start_step) / (time.perf_counter() - start)
            rows.append({"device": spec, "n_envs": n, "ppo_fps": fps})
    return rows


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
    params: Params, n_envs: int, steps: int, rounds: int = 2, sb3_kind: str | None = None
) -> dict[str, Any]:
    """rlcore vs SB3 PPO, alternating, on the PyBullet backend with identical settings.

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
    ours, theirs, splits = [], [], []
    for _ in range(rounds):
        fps, split = rlcore_fps(params, n_envs, steps)
        ours.append(fps)
        splits.append(split)
        theirs.append(sb3_fps(params, n_envs, steps, sb3_kind))
    fps_rlcore, fps_sb3 = float(np.median(ours)), float(np.median(theirs))
    split = {k: float(np.mean([s[k] for s in splits])) for k in splits[0]}
    return {
        "fps_rlcore": fps_rlcore,
        "fps_sb3": fps_sb3,
        "ratio_rlcore_vs_sb3": fps_rlcore / fps_sb3,
        "sb3_vec_env": sb3_kind,
        "rlcore_vec_env": params.train.vec_env,
        "n_envs": n_envs,
        "steps_per_run": steps,
        "rounds": rounds,
        "fps_rlcore_runs": ours,
        "fps_sb3_runs": theirs,
        "time_split_per_step": split,
    }


def usable_devices() -> list[str]:
    return [p.device for p in hw.probe_all() if p.usable]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["envs", "batched", "batched-ppo", "ppo", "all"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--n-envs", type=int, nargs="+", default=None, help="n_envs to sweep")
    parser.add_argument("--steps", type=int, default=None, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (ppo)")
    args = parser.parse_args()
    params = load_params(args.params) if Path(args.params).exists() else Params()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.what in ("envs", "all"):
        print(f"{'vec env':<10} {'n_envs':>6} {'steps/s':>10}")
        for r in env_table(params, args.n_envs or [1, 2, 4, 8], args.steps or 4000):
            print(f"{r['kind']:<10} {r['n_envs']:>6} {r['fps']:>10,.0f}")
    if args.what in ("batched", "all"):
        print(f"{'device':<10} {'n_envs':>7} {'env steps/s':>14} {'KB/env':>8}")
        for r in batched_table(params, usable_devices(), args.n_envs or [256, 4096, 16384]):
            kb = "n/a" if r["memory_per_env_kb"] is None else f"{r['memory_per_env_kb']:.2f}"
            print(f"{r['device']:<10} {r['n_envs']:>7} {r['fps']:>14,.0f} {kb:>8}")
    if args.what in ("batched-ppo", "all"):
        print(f"{'device':<10} {'n_envs':>7} {'PPO steps/s':>12}   (end to end: rollout + update)")
        for r in batched_ppo_table(params, usable_devices(), args.n_envs or [256, 4096, 16384]):
            print(f"{r['device']:<10} {r['n_envs']:>7} {r['ppo_fps']:>12,.0f}")
    if args.what in ("ppo", "all"):
        n = (args.n_envs or [params.hardware.n_envs_bullet or hw.BULLET_ENVS])[0]
        r = compare_ppo(params, n, args.steps or 8192, args.rounds)
        print(f"PPO end to end on PyBullet, {n} envs, {r['steps_per_run']} steps x {r['rounds']} rounds, alternating")
        ours, theirs = [round(x) for x in r["fps_rlcore_runs"]], [round(x) for x in r["fps_sb3_runs"]]
        print(f"  rlcore ({r['rlcore_vec_env']} chunked vec env): {r['fps_rlcore']:,.0f} steps/s  runs {ours}")
        print(f"  sb3    ({r['sb3_vec_env']}):  {r['fps_sb3']:,.0f} steps/s  runs {theirs}")
        print(f"  ratio rlcore / sb3: {r['ratio_rlcore_vs_sb3']:.2f}x")
        s = r["time_split_per_step"]
        print(
            f"  rlcore time per rollout step: env {s['env_s'] * 1e3:.2f} ms, "
            f"inference {s['inference_s'] * 1e3:.2f} ms, update {s['update_s'] * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
