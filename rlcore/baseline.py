"""The baseline inside the product: stable-baselines3's PPO on the same PyBullet env with the
same hyperparameters, logged under the same metric names, exported in rlcore's policy format."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from rlcore.config import Params
from rlcore.envs.vec import faster_vec_env, make_vec_env
from rlcore.memory import minibatch_size
from rlcore.policy_file import gaussian_bundle
from rlcore.ppo.policy import ACTIVATIONS, ActorCritic, RunningNorm
from rlcore.targets import Curriculum, TargetCache

SB3_METRICS = {
    "train/policy_gradient_loss": "policy_loss",
    "train/value_loss": "value_loss",
    "train/entropy_loss": "entropy",
    "train/approx_kl": "approx_kl",
    "train/clip_fraction": "clip_fraction",
    "train/explained_variance": "explained_variance",
    "train/learning_rate": "learning_rate",
}


def sb3_model(params: Params, venv: Any, device: str = "cpu", seed: int | None = None) -> SB3PPO:
    """SB3 PPO configured from the same params as rlcore PPO."""
    t = params.train
    lr = t.learning_rate
    # SB3 has no KL-adaptive schedule: "adaptive" runs at a constant rate there
    schedule = (lambda remaining: lr * remaining) if t.lr_schedule == "linear" else lr
    return SB3PPO(
        "MlpPolicy",
        venv,
        learning_rate=schedule,
        n_steps=t.n_steps,
        batch_size=minibatch_size(params, venv.num_envs),
        n_epochs=t.epochs,
        gamma=t.gamma,
        gae_lambda=t.gae_lambda,
        clip_range=t.clip_range,
        clip_range_vf=t.clip_value,
        ent_coef=t.entropy_coef,
        vf_coef=t.value_coef,
        max_grad_norm=t.max_grad_norm,
        target_kl=t.target_kl,
        policy_kwargs={
            "net_arch": {"pi": t.actor_hidden, "vf": t.critic_hidden},
            "activation_fn": ACTIVATIONS[t.activation],
            "log_std_init": t.init_log_std,
        },
        device=device,
        seed=params.seed if seed is None else seed,
        verbose=0,
    )


class EpisodeTally:
    """Returns and success flags of the episodes that end in a vec env's steps, summed per env
    until each ends; `take()` hands over those ended since the last call."""

    def __init__(self) -> None:
        self.returns: np.ndarray | None = None
        self.ended: list[tuple[bool, float]] = []

    def add(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> list[bool]:
        """Add one vec-env step; returns the success flags of the episodes it ended."""
        if self.returns is None:
            self.returns = np.zeros(len(rewards))
        self.returns += rewards
        flags = []
        for i in np.flatnonzero(dones):
            flags.append(bool(infos[i]["is_success"]))
            self.ended.append((flags[-1], float(self.returns[i])))
            self.returns[i] = 0.0
        return flags

    def take(self) -> list[tuple[bool, float]]:
        """(success, return) of every episode ended since the last call."""
        ended, self.ended = self.ended, []
        return ended


def episode_metrics(ended: list[tuple[bool, float]]) -> dict[str, float]:
    """success_rate and episode_return over ended episodes (EpisodeTally.take)."""
    return {
        "success_rate": float(np.mean([s for s, _ in ended])),
        "episode_return": float(np.mean([r for _, r in ended])),
    }


class _Recorder(BaseCallback):
    """Per-rollout metrics under rlcore's names."""

    def __init__(
        self,
        on_iteration: Callable[[dict], None],
        total: int,
        progress: bool,
        curriculum: Curriculum,
        holder: Any = None,
    ) -> None:
        super().__init__()
        self.holder = holder  # its finish_requested (a time limit) ends training at the next step
        self.curriculum = curriculum
        self.on_iteration = on_iteration
        self.history: list[dict[str, float]] = []
        self.episodes = EpisodeTally()
        self.start = time.perf_counter()
        self.t_rollout = self.start
        self.rollout_s = 0.0
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, desc="train sb3", mininterval=1.0)
        self.last = {"success_rate": float("nan"), "episode_return": float("nan")}

    def _on_rollout_start(self) -> None:
        now = time.perf_counter()
        if self.history or self.num_timesteps:
            update_s = now - self.t_rollout_end
            values = self.model.logger.name_to_value
            row = {ours: float(values[k]) for k, ours in SB3_METRICS.items() if k in values}
            ended = self.episodes.take()
            if ended:
                self.last = episode_metrics(ended)
                if self.curriculum.update([s for s, _ in ended]):
                    self.training_env.env_method("set_level", self.curriculum.level)
            elapsed = now - self.start
            row.update(
                self.last,
                step=self.num_timesteps,
                wall_s=elapsed,
                fps=self.num_timesteps / elapsed,
                rollout_s=self.rollout_s,
                update_s=update_s,
                curriculum_level=float(self.curriculum.level),
                iteration=len(self.history) + 1,
            )
            self.history.append(row)
            self.on_iteration(row)
        self.t_rollout = now

    def _on_rollout_end(self) -> None:
        self.t_rollout_end = time.perf_counter()
        self.rollout_s = self.t_rollout_end - self.t_rollout
        if self.bar is not None:
            self.bar.set_postfix(success=f"{self.last['success_rate']:.2f}", refresh=False)
            self.bar.update(self.num_timesteps - self.bar.n)  # redraws at most once per mininterval

    def _on_step(self) -> bool:
        self.episodes.add(self.locals["rewards"], self.locals["dones"], self.locals["infos"])
        return not getattr(self.holder, "finish_requested", False)


def to_bundle(model: SB3PPO, venv: VecNormalize | None, params: Params) -> dict[str, Any]:
    """Copy SB3's MlpPolicy weights (and VecNormalize statistics) into rlcore's policy format."""
    t = params.train
    obs_dim, act_dim = model.observation_space.shape[0], model.action_space.shape[0]
    ours = ActorCritic(obs_dim, act_dim, t.actor_hidden, t.critic_hidden, t.activation, t.init_log_std)
    sd = {k: v.detach().cpu() for k, v in model.policy.state_dict().items()}
    mapped = {"log_std": sd["log_std"]}
    for net, extractor, head in (("actor", "policy_net", "action_net"), ("critic", "value_net", "value_net")):
        n_hidden = len(t.actor_hidden if net == "actor" else t.critic_hidden)
        for i in range(n_hidden):
            for p in ("weight", "bias"):
                mapped[f"{net}.{2 * i}.{p}"] = sd[f"mlp_extractor.{extractor}.{2 * i}.{p}"]
        for p in ("weight", "bias"):
            mapped[f"{net}.{2 * n_hidden}.{p}"] = sd[f"{head}.{p}"]
    ours.load_state_dict(mapped)
    return gaussian_bundle(ours, norm_from_vecnormalize(venv, obs_dim), params.model_dump(), "sb3", obs_dim, act_dim)


def norm_from_vecnormalize(venv: VecNormalize | None, obs_dim: int) -> RunningNorm | None:
    """VecNormalize's observation statistics as rlcore's normaliser (None without one)."""
    if venv is None:
        return None
    norm = RunningNorm(obs_dim, clip=venv.clip_obs, eps=venv.epsilon)
    norm.mean.copy_(torch.as_tensor(venv.obs_rms.mean, dtype=torch.float32))
    norm.var.copy_(torch.as_tensor(venv.obs_rms.var, dtype=torch.float32))
    norm.count.fill_(float(venv.obs_rms.count))
    norm.set_extra_state({"host_count": float(venv.obs_rms.count)})
    return norm


def run_summary(model: Any, wall: float, recorder: Any, curriculum: Curriculum) -> dict[str, Any]:
    """An SB3 run's summary, in the shape rlcore.runs.train_rlcore returns."""
    return {
        "steps": model.num_timesteps,
        "wall_s": wall,
        "fps": model.num_timesteps / wall,
        "success_rate": recorder.last["success_rate"],
        "episode_return": recorder.last["episode_return"],
        "curriculum_level": curriculum.level,
        "iterations": len(recorder.history),
        "history": recorder.history,
    }


def train_sb3(
    params: Params,
    res: Any,
    targets: TargetCache,
    on_start: Callable[[Any, str | None], None],
    on_iteration: Callable[[dict], None],
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train SB3 PPO on PyBullet envs; same return shape as rlcore.runs.train_rlcore."""
    if params.env.backend != "bullet":
        raise ValueError("train.algo = 'sb3' runs on env.backend = 'bullet' (SB3 has no batched backend)")
    kind, why = params.train.vec_env, "as train.vec_env asks"
    if kind == "auto":  # SB3's faster vec env on this machine, measured
        kind, why = faster_vec_env(params, res.n_envs), f"measured faster for {res.n_envs} envs here"
    venv, vec_note = make_vec_env(params, targets, res.n_envs, kind=kind, seed=params.seed)
    venv = VecNormalize(venv, norm_obs=params.train.obs_norm, norm_reward=False, clip_obs=10.0)

    class _Holder:
        """What on_start receives: `extra` (the MLflow run id), a stop flag, the policy so far."""

        extra: dict[str, Any] = {}
        finish_requested = False

        def policy(self) -> dict[str, Any]:
            return to_bundle(model, venv if params.train.obs_norm else None, params)

    holder = _Holder()
    try:
        on_start(holder, f"sb3 vec env: {vec_note} ({why}); sb3 runs do not resume from checkpoints, starting fresh")
        model = sb3_model(params, venv, res.policy_device)
        curriculum = Curriculum.from_config(params.env.curriculum, targets.n_levels, in_flight=res.n_envs)
        venv.env_method("set_level", curriculum.level)
        recorder = _Recorder(on_iteration, params.train.total_steps, progress, curriculum, holder)
        start = time.perf_counter()
        model.learn(params.train.total_steps, callback=recorder)
        wall = time.perf_counter() - start
        recorder._on_rollout_start()  # flush the last update's metrics
        if recorder.bar is not None:
            recorder.bar.close()
        bundle = holder.policy()
    finally:
        venv.close()
    return run_summary(model, wall, recorder, curriculum), bundle
