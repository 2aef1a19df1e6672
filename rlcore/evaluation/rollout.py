"""Held-out episodes in the physics engine at accurate settings, driven by the policy or by the
reference controller, on every core.

Episode i visits held-out target `chosen[i]` from the start state `env.reset(seed=seed + i)`, so
its result does not depend on which worker runs it or what ran before: the parallel evaluation
gives the serial one's rows. Both drivers go through `env.step(action)`, the same action
interface (a joint-velocity fraction per joint) and the same clipping.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache
from rlcore.evaluation.metrics import Trajectory, episode_metrics

CHUNK = 25  # episodes per job: small enough for a smooth progress bar and balanced workers


def heldout_targets(targets: TargetCache, episodes: int | None, seed: int) -> np.ndarray:
    """The held-out target indices an evaluation visits: every one once (None), or `episodes` of
    them drawn without replacement while they last."""
    rng = np.random.default_rng(seed)
    pool = targets.indices("heldout")
    episodes = len(pool) if episodes is None else episodes
    return pool[rng.permutation(len(pool))[:episodes]] if episodes <= len(pool) else rng.choice(pool, episodes)


class _PolicyDriver:
    """The deterministic policy (an `rlcore.policy.file.Policy`), one observation at a time."""

    def __init__(self, policy: Any) -> None:
        import torch

        self.torch = torch
        self.policy = policy

    def start(self, env: Any, obs: np.ndarray) -> None:
        """Nothing to reset: the policy reads everything from the observation."""

    def act(self, env: Any, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.policy(self.torch.as_tensor(obs).unsqueeze(0))[0].numpy()


class _ReferenceDriver:
    """The damped-least-squares controller on the env's own chain, mirroring the env's command."""

    def __init__(self, env: Any, damping: float) -> None:
        from rlcore.policy.reference import DlsController

        self.controller = DlsController.from_chain(env.arm.chain, env.cfg.control_hz, damping, env.cfg.action_power)

    def start(self, env: Any, obs: np.ndarray) -> None:
        self.controller.reset(env.q_cmd)  # the env's command starts where the arm is

    def act(self, env: Any, obs: np.ndarray) -> np.ndarray:
        return self.controller.act(env.target)


def run_episodes(
    env: Any,
    driver: str,
    params: Params,
    targets: TargetCache,
    chosen: np.ndarray,
    first: int,
    seed: int,
    policy: Any = None,
) -> list[dict[str, Any]]:
    """Episodes first, first + 1, ... on targets `chosen` in `env` (an eval-mode reach env),
    driven by `driver` ("policy": needs `policy`; "reference"); one metrics row each."""
    runner = _PolicyDriver(policy) if driver == "policy" else _ReferenceDriver(env, params.eval.dls_damping)
    arm, dof, steps = env.arm, env.dof, params.env.episode_steps
    mid, half = (arm.upper + arm.lower) / 2, (arm.upper - arm.lower) / 2
    rows = []
    for k, idx in enumerate(chosen):
        i = first + k
        obs, _ = env.reset(seed=seed + i, options={"target": targets.positions[idx]})
        runner.start(env, obs)
        distance, actions = np.empty(steps), np.empty((steps, dof), np.float32)
        q, qd, flange = np.empty((steps, dof)), np.empty((steps, dof)), np.empty((steps + 1, 3))
        flange[0] = obs[2 * dof : 2 * dof + 3]
        end, collided = steps, False
        for t in range(steps):
            action = np.clip(runner.act(env, obs), -1.0, 1.0)
            obs, _, collided, _, info = env.step(action)
            distance[t], actions[t] = info["distance"], action
            q[t], qd[t] = obs[:dof] * half + mid, obs[dof : 2 * dof] * arm.vmax
            flange[t + 1] = obs[2 * dof : 2 * dof + 3]
            if collided:  # a workcell's obstacle: the episode ends here, a failure
                end = t + 1
                break
        traj = Trajectory(distance[:end], actions[:end], q[:end], qd[:end], flange[: end + 1], env.target.copy())
        row = {"episode": i, "target": int(idx), "level": int(targets.level[idx])}
        contact = collided if env.cell else None
        row.update(episode_metrics(traj, params.eval.radii, arm.lower, arm.upper, arm.vmax, contact))
        rows.append(row)
    return rows


_WORKER_ENV: dict[str, Any] = {}  # a worker process's env, built by its first job and kept


def _job(
    driver: str, params: Params, targets: TargetCache, chosen: np.ndarray, first: int, seed: int, policy: Any
) -> tuple[str, int, list[dict[str, Any]]]:
    import torch

    from rlcore.envs.engines import make_reach_env

    torch.set_num_threads(1)  # one core per worker: the workers share the machine's cores
    if "env" not in _WORKER_ENV:
        _WORKER_ENV["env"] = make_reach_env(params, targets, mode="eval")
    return driver, first, run_episodes(_WORKER_ENV["env"], driver, params, targets, chosen, first, seed, policy)


def evaluate_drivers(
    drivers: list[str],
    params: Params,
    targets: TargetCache,
    chosen: np.ndarray,
    seed: int,
    policy: Any = None,
    workers: int = 1,
    progress: bool = False,
    gui: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Every driver's rows on the episodes of `chosen` (the same start states and targets for
    each), on `workers` processes (1: in this process, where `gui` opens a window). Rows come
    back in episode order."""
    jobs = [(d, lo) for d in drivers for lo in range(0, len(chosen), CHUNK)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(drivers) * len(chosen), desc=f"evaluate ({' + '.join(drivers)})", unit="episode", mininterval=2.0
        )
    parts: dict[tuple[str, int], list[dict[str, Any]]] = {}
    args = [(d, params, targets, chosen[lo : lo + CHUNK], lo, seed, policy) for d, lo in jobs]
    if workers <= 1 or len(jobs) == 1:
        from rlcore.envs.engines import make_reach_env

        env = make_reach_env(params, targets, mode="eval", gui=gui)
        try:
            for a in args:
                parts[(a[0], a[4])] = rows = run_episodes(env, *a)
                if bar is not None:
                    bar.update(len(rows))
        finally:
            env.close()
    else:
        from rlcore.runtime.oscompat import preload_for_forkserver, resolve_start_method

        method = resolve_start_method(params.hardware.mp_start_method)
        preload_for_forkserver(method, [__name__, "rlcore.envs.engines", "rlcore.policy.file"])
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            for future in as_completed([pool.submit(_job, *a) for a in args]):
                driver, first, rows = future.result()
                parts[(driver, first)] = rows
                if bar is not None:
                    bar.update(len(rows))
    if bar is not None:
        bar.close()
    return {d: [row for lo in range(0, len(chosen), CHUNK) for row in parts[(d, lo)]] for d in drivers}
