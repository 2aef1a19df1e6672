"""Measuring on a noisy machine: throughput of one run, alternating rounds, the machine line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from rlcore.config.schema import Params
from rlcore.runtime.oscompat import cpu_list
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
    """Raw steps/s of one reach env on `env.physics`'s engine (random actions, resets included),
    start-up excluded."""
    from rlcore.envs.engines import make_reach_env

    env = make_reach_env(params)
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
    """The measures plus the machine's single-env steps/s (where a physics engine is installed)."""
    from rlcore.config.schema import ConfigError
    from rlcore.envs.engines import resolve

    try:
        resolve(params.env.physics)
    except ConfigError:
        return measures
    return {**measures, SINGLE: lambda: single_env_fps(params, steps)}


def machine(results: dict[Hashable, Spread], params: Params) -> dict[str, Any]:
    """The machine line beside every table: cores and single-env steps/s (median, spread) on
    `env.physics`'s engine."""
    single = results.get(SINGLE)
    if single is None:
        return {"cores": len(cpu_list()), "single_env": None}
    from rlcore.envs.engines import LABELS, engine_of

    return {"cores": len(cpu_list()), "single_env": single.to_dict(), "engine": LABELS[engine_of(params)]}


def machine_text(info: dict[str, Any]) -> str:
    single = info["single_env"]
    if single is None:
        return f"machine: {info['cores']} cores (no single-env figure: no physics engine is installed here)"
    spread = Spread(single["runs"])
    return f"machine: {info['cores']} cores, single-env {info.get('engine', 'PyBullet')} {spread.text()} steps/s"


def rounds_arg(text: str) -> int:
    """An argparse type: a number of rounds, at least MIN_ROUNDS (a median of fewer is no median)."""
    from rlcore.pipeline.cli import positive_int

    value = positive_int(text)
    if value < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(
            f"must be >= {MIN_ROUNDS} (a median needs rounds to be taken over), got {value}"
        )
    return value
