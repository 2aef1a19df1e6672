"""The algorithm interface: what every training algorithm implements and hands back.

An algorithm is built once (the registry holds one of each) and asked, for a given `Params`:
whether it can run it (`check`), how many envs and how large a batch (`n_envs`, `minibatch`),
what memory it needs and where (`memory`), and then to `train`. Every algorithm trains with the
same two callbacks and returns the same `TrainResult`, so the train stage, tuning trials and
`python -m rlcore.bench algos` never ask which algorithm they drive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypedDict

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache
from rlcore.robots.chain import chain_of
from rlcore.runtime.memory import estimate_memory, minibatch_size


@dataclass
class Resolved:
    """Devices and sizes a run will use (the pipeline resolves them from the hardware decision)."""

    policy_device: str
    env_device: str
    n_envs: int
    minibatch: int
    vram_limit_mb: float | None
    estimate_mb: float
    notes: list[str] = field(default_factory=list)


class RunHandle(Protocol):
    """The run in progress, as `on_start` hands it to the caller."""

    extra: dict[str, Any]  # kept with the algorithm's checkpoints where it resumes (the MLflow run id)
    history: list[dict[str, float]]  # the metric rows so far (a resumed run: those it restored)
    tags: dict[str, str]  # what the algorithm chose on its own (e.g. compile): printed and tagged on the run
    finish_requested: bool  # a caller's limit: finish after this update, as at total_steps
    stop_requested: bool  # Ctrl-C: stop after this update and raise KeyboardInterrupt

    def policy(self) -> dict[str, Any]:
        """The policy file's bundle as the run stands now (rlcore.policy.file)."""


class TrainSummary(TypedDict):
    """What a finished run reports, whatever trained it."""

    steps: int
    wall_s: float
    fps: float
    success_rate: float
    episode_return: float
    curriculum_level: int
    iterations: int
    history: list[dict[str, float]]


class TrainResult(NamedTuple):
    summary: TrainSummary
    bundle: dict[str, Any]  # the policy file's contents (rlcore.policy.file.make_bundle)


OnStart = Callable[[RunHandle, "str | None"], None]  # (the run, a note on resuming or starting fresh)
OnIteration = Callable[[dict[str, float]], None]  # one metrics row per update (or per log interval)


@dataclass(frozen=True)
class Memory:
    """A run's memory need: `mb` megabytes, on the training device when `on_device` (checked
    against the VRAM limit), else in host memory; `note` says what it counts."""

    mb: float
    on_device: bool
    note: str | None = None


class Algorithm(Protocol):
    """One training algorithm. Register it in rlcore.algos.registry under its `train.algo` name."""

    name: str
    summary_line: str  # how the train stage names its memory figure, e.g. "estimated peak"
    resumes: bool  # continues from train.checkpoint_dir after an interruption
    objectives: tuple[str, ...]  # the tune.objective values it can serve

    def check(self, params: Params) -> None:
        """Raise ConfigError (one line naming the key) for params it cannot train."""

    def n_envs(self, params: Params, decided: int) -> int:
        """Envs to train on; `decided` is the hardware stage's choice for the env backend."""

    def minibatch(self, params: Params, n_envs: int) -> int:
        """Samples per gradient step."""

    def memory(self, params: Params, n_envs: int) -> Memory:
        """Its memory need at these sizes, before any work."""

    def train(
        self,
        params: Params,
        res: Resolved,
        targets: TargetCache,
        checkpoint_dir: Path | None,
        on_start: OnStart,
        on_iteration: OnIteration,
        progress: bool = True,
    ) -> TrainResult:
        """Train `train.total_steps` steps (or until a caller sets finish_requested)."""


class PpoSizing:
    """The sizes and memory need of a PPO run, rlcore's or SB3's: the hardware stage's n_envs
    unless train.n_envs is set, the minibatch of train.minibatches (or train.minibatch_size), and
    rlcore's memory model of the peak on the training device."""

    def n_envs(self, params: Params, decided: int) -> int:
        return params.train.n_envs or decided

    def minibatch(self, params: Params, n_envs: int) -> int:
        return minibatch_size(params.train, n_envs)

    def memory(self, params: Params, n_envs: int) -> Memory:
        chain = chain_of(params.robot)
        twin = params.env.backend == "twin"
        from rlcore.robots.collision import collision_points

        points = collision_points(params) if twin else 0
        return Memory(estimate_memory(params.train, chain, n_envs, twin=twin, points=points).total_mb, on_device=True)
