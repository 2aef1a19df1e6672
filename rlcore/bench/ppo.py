"""rlcore PPO against stable-baselines3 PPO on the same PyBullet env, in alternating rounds."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from rlcore.bench.rounds import MIN_ROUNDS, SINGLE, alternate, machine_text, single_env_fps
from rlcore.config.schema import Params
from rlcore.envs.engines import LABELS, engine_of
from rlcore.runtime import devices
from rlcore.runtime import probes as hw
from rlcore.stats import Spread


def rlcore_fps(params: Params, n_envs: int, steps: int) -> tuple[float, dict[str, float]]:
    """End-to-end rlcore PPO steps/s on PyBullet (env start-up excluded), and its time split."""
    from rlcore.algos.ppo.trainer import Trainer
    from rlcore.envs.factory import make_env
    from rlcore.pipeline.train import cpu_threads

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

    from rlcore.algos.sb3.ppo import sb3_model
    from rlcore.envs.vec import make_vec_env

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
    from rlcore.envs.vec import faster_vec_env

    params = params.model_copy(
        update={
            "env": params.env.model_copy(update={"backend": "physics"}),
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
    cores = devices.cpu_cores()
    return {
        "fps_rlcore": rl.median,
        "fps_sb3": sb.median,
        "ratio_rlcore_vs_sb3": rl.median / sb.median,
        "ratio_runs": Spread([a / b for a, b in zip(rl.runs, sb.runs)]),
        "rlcore": rl,
        "sb3": sb,
        "fps_single_env": single.median,
        "single_env": single,
        "engine": LABELS[engine_of(params)],
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
        f"PPO end to end on {r['engine']}, {r['n_envs']} envs, {r['steps_per_run']} steps per run, "
        f"median of {r['rounds']} alternating rounds (min-max, spread = (max-min)/median)",
        f"  rlcore ({r['rlcore_vec_env']} vec env: shared memory unless set otherwise): {r['rlcore'].text()} steps/s, "
        f"parallel efficiency {r['efficiency_rlcore']:.2f}",
        f"  sb3    ({r['sb3_vec_env']}): {r['sb3'].text()} steps/s, parallel efficiency {r['efficiency_sb3']:.2f}",
        f"  ratio rlcore / sb3: {r['ratio_rlcore_vs_sb3']:.2f}x (per round: {r['ratio_runs'].text('.2f')})",
        f"  {machine_text({'cores': r['cores'], 'single_env': r['single_env'].to_dict(), 'engine': r['engine']})}",
        "  parallel efficiency = steps/s / (cores x single-env steps/s)",
        f"  rlcore time per rollout step: env {s['env_s'] * 1e3:.2f} ms, "
        f"inference {s['inference_s'] * 1e3:.2f} ms, update {s['update_s'] * 1e3:.2f} ms",
    ]
