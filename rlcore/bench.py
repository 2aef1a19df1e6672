"""Throughput measurements: `python -m rlcore.bench envs` prints env steps per second.

Single PyBullet env (raw gymnasium loop) and stable-baselines3 DummyVecEnv / SubprocVecEnv over
n_envs, all at the training physics settings of params.yaml.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

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


def env_table(params: Params, n_envs_list: list[int], steps: int) -> list[dict]:
    rows = [{"kind": "single", "n_envs": 1, "fps": single_env_fps(params, steps)}]
    for kind in ("dummy", "subproc"):
        for n in n_envs_list:
            rows.append({"kind": kind, "n_envs": n, "fps": vec_env_fps(params, kind, n, steps)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["envs"], help="what to measure")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    params = load_params(args.params) if Path(args.params).exists() else Params()
    rows = env_table(params, args.n_envs, args.steps)
    print(f"{'vec env':<10} {'n_envs':>6} {'steps/s':>10}")
    for r in rows:
        print(f"{r['kind']:<10} {r['n_envs']:>6} {r['fps']:>10,.0f}")


if __name__ == "__main__":
    main()
