"""Off-policy baselines inside the product: stable-baselines3's SAC and DQN on the PyBullet env,
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
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from rlcore.baseline import EpisodeTally, episode_metrics, norm_from_vecnormalize, run_summary
from rlcore.config import Params
from rlcore.envs.vec import faster_vec_env, make_vec_env
from rlcore.policy_file import make_bundle
from rlcore.ppo.policy import ACTIVATIONS
from rlcore.targets import Curriculum, TargetCache

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


def n_envs_for(params: Params) -> int:
    """PyBullet envs of an off-policy run: train.n_envs when set, else the algorithm's own."""
    section = params.train.sac if params.train.algo == "sb3_sac" else params.train.dqn
    return params.train.n_envs or section.n_envs


def replay_buffer_mb(params: Params) -> float:
    """Host memory of SB3's replay buffer at these params (float32 observations and next
    observations, actions, rewards, flags), in MB."""
    from rlcore.envs.task import obs_size

    dof = params_dof(params)
    sac = params.train.algo == "sb3_sac"
    size = params.train.sac.buffer_size if sac else params.train.dqn.buffer_size
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


def make_model(params: Params, venv: VecEnv, device: str = "cpu", seed: int | None = None) -> SAC | DQN:
    """SB3's SAC or DQN configured from `train.sac` / `train.dqn` (gamma from train.gamma)."""
    t = params.train
    seed = params.seed if seed is None else seed
    if t.algo == "sb3_sac":
        s = t.sac
        ent = s.ent_coef if isinstance(s.ent_coef, str) and s.ent_coef.startswith("auto") else float(s.ent_coef)
        return SAC("MlpPolicy", venv, ent_coef=ent, **_shared_kwargs(s, t.gamma, device, seed))
    if t.algo == "sb3_dqn":
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
    raise ValueError(f"train.algo = {t.algo!r} is not an off-policy algorithm (sb3_sac, sb3_dqn)")


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
    episodes as they end; `holder.finish_requested` (a time limit) ends training."""

    def __init__(
        self,
        algo: str,
        on_iteration: Callable[[dict], None],
        every: int,
        curriculum: Curriculum,
        holder: Any,
        bar: Any = None,
    ) -> None:
        super().__init__()
        self.names = METRICS[algo]
        self.on_iteration, self.every, self.curriculum, self.holder, self.bar = (
            on_iteration, every, curriculum, holder, bar,
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
        return not getattr(self.holder, "finish_requested", False)

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
            self.bar.set_postfix(success=f"{self.last['success_rate']:.2f}", refresh=False)
            self.bar.update(self.num_timesteps - self.bar.n)


class Run:
    """What on_start receives: the run's state (`extra` for the MLflow run id), a stop flag, and
    `policy()` for the policy file as it stands."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.extra: dict[str, Any] = {}
        self.finish_requested = False
        self.model: SAC | DQN | None = None
        self.venv: VecNormalize | None = None

    def policy(self) -> dict[str, Any]:
        return to_bundle(self.model, self.venv if self.params.train.obs_norm else None, self.params)


def train_offpolicy(
    params: Params,
    res: Any,
    targets: TargetCache,
    on_start: Callable[[Any, str | None], None],
    on_iteration: Callable[[dict], None],
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train SB3 SAC or DQN on PyBullet envs; same return shape as rlcore.runs.train_rlcore."""
    algo = params.train.algo
    if params.env.backend != "bullet":
        raise ValueError(f"train.algo = {algo!r} runs on env.backend = 'bullet' (SB3 has no batched backend)")
    n_envs = n_envs_for(params)
    kind, why = params.train.vec_env, "as train.vec_env asks"
    if kind in ("auto", "shared"):  # SB3 drives its own VecEnvs: its faster one here, measured
        kind, why = faster_vec_env(params, n_envs), f"measured faster for {n_envs} envs here"
    venv, vec_note = make_vec_env(params, targets, n_envs, kind=kind, seed=params.seed)
    try:
        if algo == "sb3_dqn":
            d = params.train.dqn
            venv = DiscreteActions(venv, action_table(params_dof(params), d.actions, d.action_scale))
        venv = VecNormalize(venv, norm_obs=params.train.obs_norm, norm_reward=False, clip_obs=10.0)
        run = Run(params)
        run.venv = venv
        note = f"{algo} vec env: {vec_note} x{n_envs} ({why}); SB3 runs do not resume from checkpoints, starting fresh"
        on_start(run, note)
        run.model = model = make_model(params, venv, res.policy_device)
        curriculum = Curriculum.from_config(params.env.curriculum, targets.n_levels, in_flight=n_envs)
        venv.env_method("set_level", curriculum.level)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=params.train.total_steps, unit="step", unit_scale=True, desc=f"train {algo}")
        recorder = _Recorder(algo, on_iteration, params.train.log_every_steps, curriculum, run, bar)
        start = time.perf_counter()
        model.learn(params.train.total_steps, callback=recorder, log_interval=None)
        wall = time.perf_counter() - start
        if not recorder.history or recorder.history[-1]["step"] != model.num_timesteps:
            recorder.row()  # the last steps' metrics
        if bar is not None:
            bar.close()
        bundle = run.policy()
    finally:
        venv.close()
    return run_summary(model, wall, recorder, curriculum), bundle
