"""Off-policy baselines inside the product: stable-baselines3's SAC and DQN on the physics env,
with rlcore's curriculum and metric names, exported in rlcore's policy file.

SAC acts in the env's own action space (one joint-velocity command in [-1, 1] per joint). DQN
needs a discrete space, so it chooses a row of an action table (`action_table`):

- ``single_joint`` (default): row 0 is "no motion"; row 1 + 2j moves joint j at +action_scale,
  row 2 + 2j at -action_scale; 1 + 2 x joints rows (13 for six joints);
- ``joint_pairs``: those rows, then every pair of joints j < k at (+,+), (+,-), (-,+), (-,-);
- explicit rows in params.yaml, one value per joint.

Metrics are logged every `train.log_every_steps` env steps (an SB3 "rollout" is one env step
for these algorithms), under the PPO names where they mean the same thing (success_rate,
episode_return, fps, learning_rate, policy_loss) and names of their own otherwise (q_loss,
ent_coef, exploration_rate).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from rlcore.algos.base import Memory, OnIteration, OnStart, Resolved, TrainResult
from rlcore.algos.sb3.common import (
    EpisodeTally,
    Sb3Run,
    check_physics_backend,
    curriculum_for,
    episode_metrics,
    norm_from_vecnormalize,
    normalised_vec_env,
    run_summary,
)
from rlcore.config.schema import DqnConfig, Params, SacConfig
from rlcore.envs.targets import Curriculum, TargetCache
from rlcore.envs.task import obs_size
from rlcore.policy.file import make_bundle
from rlcore.policy.networks import ACTIVATIONS

METRICS = {
    "sb3_sac": {
        "train/actor_loss": "policy_loss",
        "train/critic_loss": "q_loss",
        "train/ent_coef": "ent_coef",
        "train/learning_rate": "learning_rate",
    },
    "sb3_dqn": {
        "train/loss": "q_loss",
        "train/learning_rate": "learning_rate",
        "rollout/exploration_rate": "exploration_rate",
    },
}


def action_table(dof: int, actions: str | list[list[float]], scale: float) -> np.ndarray:
    """DQN's discrete actions as rows of joint-velocity commands, shape (n_actions, dof)."""
    if not isinstance(actions, str):
        table = np.asarray(actions, dtype=np.float32)
        if table.ndim != 2 or table.shape[1] != dof:
            raise ValueError(f"train.dqn.actions: rows of {dof} values (one per joint), got shape {table.shape}")
        return table
    rows = [np.zeros(dof, dtype=np.float32)]
    for j in range(dof):
        for sign in (1.0, -1.0):
            row = np.zeros(dof, dtype=np.float32)
            row[j] = sign * scale
            rows.append(row)
    if actions == "joint_pairs":
        for j, k in itertools.combinations(range(dof), 2):
            for sj, sk in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
                row = np.zeros(dof, dtype=np.float32)
                row[j], row[k] = sj * scale, sk * scale
                rows.append(row)
    elif actions != "single_joint":
        raise ValueError(f"train.dqn.actions = {actions!r}: single_joint, joint_pairs or a list of rows")
    return np.stack(rows)


class DiscreteActions(VecEnvWrapper):
    """A continuous-action VecEnv driven by indices into an action table."""

    def __init__(self, venv: VecEnv, table: np.ndarray) -> None:
        super().__init__(venv, action_space=gym.spaces.Discrete(len(table)))
        self.table = table

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.table[np.asarray(actions, dtype=np.int64).reshape(-1)])

    def step_wait(self) -> Any:
        return self.venv.step_wait()

    def reset(self) -> Any:
        return self.venv.reset()


def section_of(params: Params, name: str) -> SacConfig | DqnConfig:
    """The params section of the off-policy algorithm `name` (sb3_sac or sb3_dqn)."""
    return params.train.sac if name == "sb3_sac" else params.train.dqn


def replay_buffer_mb(params: Params, name: str) -> float:
    """Host memory of SB3's replay buffer at these params (float32 observations and next
    observations, actions, rewards, flags), in MB."""
    dof = params_dof(params)
    sac = name == "sb3_sac"
    size = section_of(params, name).buffer_size
    per_step = 2 * obs_size(dof) * 4 + (dof * 4 if sac else 8) + 4 + 4 + 4
    return size * per_step / 2**20


def exploration_fraction(params: Params) -> float:
    """DQN's epsilon schedule as SB3's share of total_steps (train.dqn.exploration_steps wins)."""
    d = params.train.dqn
    if d.exploration_steps is None:
        return d.exploration_fraction
    return min(1.0, d.exploration_steps / params.train.total_steps)


def _shared_kwargs(section: Any, gamma: float, device: str, seed: int) -> dict[str, Any]:
    """The SB3 arguments SAC and DQN take alike, from `train.sac` or `train.dqn`."""
    return {
        "learning_rate": section.learning_rate,
        "buffer_size": section.buffer_size,
        "learning_starts": section.learning_starts,
        "batch_size": section.batch_size,
        "tau": section.tau,
        "gamma": gamma,
        "train_freq": section.train_freq,
        "gradient_steps": section.gradient_steps,
        "policy_kwargs": {"net_arch": section.hidden, "activation_fn": ACTIVATIONS[section.activation]},
        "device": device,
        "seed": seed,
        "verbose": 0,
    }


def make_model(params: Params, name: str, venv: VecEnv, device: str = "cpu", seed: int | None = None) -> SAC | DQN:
    """SB3's SAC or DQN (`name`: sb3_sac, sb3_dqn) configured from `train.sac` / `train.dqn`
    (gamma from train.gamma)."""
    t = params.train
    seed = params.seed if seed is None else seed
    if name == "sb3_sac":
        s = t.sac
        ent = s.ent_coef if isinstance(s.ent_coef, str) and s.ent_coef.startswith("auto") else float(s.ent_coef)
        return SAC("MlpPolicy", venv, ent_coef=ent, **_shared_kwargs(s, t.gamma, device, seed))
    if name == "sb3_dqn":
        d = t.dqn
        return DQN(
            "MlpPolicy",
            venv,
            target_update_interval=d.target_update_interval,
            exploration_fraction=exploration_fraction(params),
            exploration_initial_eps=d.exploration_initial_eps,
            exploration_final_eps=d.exploration_final_eps,
            **_shared_kwargs(d, t.gamma, device, seed),
        )
    raise ValueError(f"{name!r} is not an off-policy algorithm (sb3_sac, sb3_dqn)")


def to_bundle(model: SAC | DQN, venv: VecNormalize | None, params: Params) -> dict[str, Any]:
    """SB3's SAC actor or DQN Q-network (and VecNormalize statistics) as rlcore's policy file."""
    obs_dim = model.observation_space.shape[0]
    norm = norm_from_vecnormalize(venv, obs_dim)
    if isinstance(model, SAC):
        s = params.train.sac
        actor = model.policy.actor
        state = {f"latent_pi.{k}": v for k, v in actor.latent_pi.state_dict().items()}
        state.update({f"mu.{k}": v for k, v in actor.mu.state_dict().items()})
        act_dim = model.action_space.shape[0]
        return make_bundle(
            "squashed", "sb3_sac", state, norm, params.model_dump(), obs_dim, act_dim,
            hidden=list(s.hidden), activation=s.activation,
        )  # fmt: skip
    d = params.train.dqn
    table = torch.as_tensor(action_table(params_dof(params), d.actions, d.action_scale))
    state = {f"q_net.{k}": v for k, v in model.q_net.q_net.state_dict().items()}
    state["table"] = table
    return make_bundle(
        "discrete", "sb3_dqn", state, norm, params.model_dump(), obs_dim, table.shape[1],
        hidden=list(d.hidden), activation=d.activation,
    )  # fmt: skip


def params_dof(params: Params) -> int:
    """The robot's joint count (the action size)."""
    from rlcore.robots.chain import read_chain

    return read_chain(params.robot.urdf, params.robot.ee_link).dof


class _Recorder(BaseCallback):
    """One metrics row per `every` env steps under rlcore's names; the curriculum follows the
    episodes as they end; the run's stop flags end training."""

    def __init__(
        self,
        algo: str,
        on_iteration: Callable[[dict], None],
        every: int,
        curriculum: Curriculum,
        run: Sb3Run,
        bar: Any = None,
    ) -> None:
        super().__init__()
        self.names = METRICS[algo]
        self.on_iteration, self.every, self.curriculum, self.run, self.bar = (
            on_iteration, every, curriculum, run, bar,
        )  # fmt: skip
        self.history: list[dict[str, float]] = []
        self.episodes = EpisodeTally()
        self.next_row = every
        self.start = time.perf_counter()
        self.last = {"success_rate": float("nan"), "episode_return": float("nan")}

    def _on_step(self) -> bool:
        flags = self.episodes.add(self.locals["rewards"], self.locals["dones"], self.locals["infos"])
        if flags and self.curriculum.update(flags):
            self.training_env.env_method("set_level", self.curriculum.level)
        if self.num_timesteps >= self.next_row:
            self.next_row += self.every
            self.row()
        return self.run.keep_going()

    def row(self) -> None:
        """Append and send one metrics row (also called once after training)."""
        ended = self.episodes.take()
        if ended:
            self.last = episode_metrics(ended)
        values = self.model.logger.name_to_value
        row = {ours: float(values[k]) for k, ours in self.names.items() if k in values}
        if isinstance(self.model, DQN):
            row["exploration_rate"] = float(self.model.exploration_rate)
        elapsed = time.perf_counter() - self.start
        row.update(
            self.last,
            step=self.num_timesteps,
            wall_s=elapsed,
            fps=self.num_timesteps / elapsed,
            curriculum_level=float(self.curriculum.level),
            iteration=len(self.history) + 1,
        )
        self.history.append(row)
        self.on_iteration(row)
        if self.bar is not None:
            self.bar.set_postfix(train_success=f"{self.last['success_rate']:.2f}", refresh=False)
            self.bar.update(self.num_timesteps - self.bar.n)


class Sb3OffPolicy:
    """stable-baselines3's SAC (`train.algo: sb3_sac`) or DQN (`sb3_dqn`) on the physics envs.
    Its replay buffer lives in host memory, so the VRAM limit does not bound it."""

    summary_line = "replay buffer"
    resumes = False
    objectives = ("success_after_steps",)  # success_at_budget times PPO updates

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, params: Params) -> None:
        check_physics_backend(self.name, params)

    def n_envs(self, params: Params, decided: int) -> int:
        """train.n_envs when set, else the algorithm's own (train.sac.n_envs, train.dqn.n_envs)."""
        return params.train.n_envs or section_of(params, self.name).n_envs

    def minibatch(self, params: Params, n_envs: int) -> int:
        return section_of(params, self.name).batch_size

    def memory(self, params: Params, n_envs: int) -> Memory:
        mb = replay_buffer_mb(params, self.name)
        return Memory(
            mb,
            on_device=False,
            note=f"VRAM check skipped for {self.name}: rlcore's memory model is PPO's; SB3 keeps the replay buffer "
            f"({mb:.0f} MB) in host memory and puts only its networks and one batch on the device",
        )

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
        """Train SAC or DQN; it starts fresh every time (no checkpoints)."""
        self.check(params)
        wrap = None
        if self.name == "sb3_dqn":
            d = params.train.dqn
            table = action_table(params_dof(params), d.actions, d.action_scale)
            wrap = lambda venv: DiscreteActions(venv, table)  # noqa: E731
        venv, note = normalised_vec_env(params, targets, res.n_envs, wrap)
        try:
            model = make_model(params, self.name, venv, res.policy_device)
            run = Sb3Run(lambda: to_bundle(model, venv if params.train.obs_norm else None, params))
            on_start(run, f"{self.name} vec env: {note}")
            curriculum = curriculum_for(params, targets, venv, res.n_envs)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=params.train.total_steps, unit="step", unit_scale=True, desc=f"train {self.name}")
            recorder = _Recorder(self.name, on_iteration, params.train.log_every_steps, curriculum, run, bar)
            start = time.perf_counter()
            model.learn(params.train.total_steps, callback=recorder, log_interval=None)
            wall = time.perf_counter() - start
            if not recorder.history or recorder.history[-1]["step"] != model.num_timesteps:
                recorder.row()  # the last steps' metrics
            if bar is not None:
                bar.close()
            if run.stop_requested:
                raise KeyboardInterrupt
            return TrainResult(run_summary(model, wall, recorder, curriculum), run.policy())
        finally:
            venv.close()


class Sb3Sac(Sb3OffPolicy):
    """stable-baselines3's SAC (`train.algo: sb3_sac`, settings in train.sac)."""

    def __init__(self) -> None:
        super().__init__("sb3_sac")


class Sb3Dqn(Sb3OffPolicy):
    """stable-baselines3's DQN (`train.algo: sb3_dqn`, settings in train.dqn)."""

    def __init__(self) -> None:
        super().__init__("sb3_dqn")
