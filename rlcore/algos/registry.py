"""The algorithm registry, as rl-zoo3 and gymnasium keep theirs: `train.algo` names an entry
here, and this is the only place that reads the name.

Entries are entry points ("module:Class"), imported on first use, so a run of rlcore PPO on the
twin never imports stable-baselines3 or PyBullet (a GPU box may have neither). Adding an
algorithm is one module in rlcore/algos/, one line in ALGORITHMS, and (where it has settings)
its section in rlcore/config/schema.py; `register` adds one from outside (a plug-in, a test).
"""

from __future__ import annotations

import importlib

from rlcore.algos.base import Algorithm
from rlcore.config.schema import ConfigError, Params

ALGORITHMS: dict[str, str | Algorithm] = {
    "rlcore": "rlcore.algos.ppo.runner:RlcorePPO",
    "sb3": "rlcore.algos.sb3.ppo:Sb3PPO",
    "sb3_sac": "rlcore.algos.sb3.offpolicy:Sb3Sac",
    "sb3_dqn": "rlcore.algos.sb3.offpolicy:Sb3Dqn",
}


def register(name: str, algorithm: str | Algorithm) -> None:
    """Add (or replace) an algorithm under `name`: an instance, or an entry point "module:Class"."""
    ALGORITHMS[name] = algorithm


def get(name: str) -> Algorithm:
    """The algorithm registered as `name`, built on first use; ConfigError for an unknown name."""
    entry = ALGORITHMS.get(name)
    if entry is None:
        raise ConfigError(f"train.algo = {name!r}: not a registered algorithm (registered: {', '.join(ALGORITHMS)})")
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = ALGORITHMS[name] = getattr(importlib.import_module(module), cls)()
    return entry


def algorithm_for(params: Params) -> Algorithm:
    """The algorithm `train.algo` names, once it has checked these params; ConfigError (one line)
    for an unknown name or params it cannot train."""
    algorithm = get(params.train.algo)
    algorithm.check(params)
    return algorithm
