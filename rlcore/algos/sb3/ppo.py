"""The baseline inside the product: stable-baselines3's PPO on the same physics env with the
same hyperparameters, logged under the same metric names, exported in rlcore's policy format."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from rlcore.algos.base import OnIteration, OnStart, PpoSizing, Resolved, TrainResult
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
from rlcore.config.schema import Params
from rlcore.envs.targets import Curriculum, TargetCache
from rlcore.policy.file import gaussian_bundle
from rlcore.policy.networks import ACTIVATIONS, ActorCritic
from rlcore.runtime.memory import minibatch_size

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
        batch_size=minibatch_size(params.train, venv.num_envs),
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


class _Recorder(BaseCallback):
    """Per-rollout metrics under rlcore's names."""

    def __init__(
        self,
        on_iteration: Callable[[dict], None],
        total: int,
        progress: bool,
        curriculum: Curriculum,
        run: Sb3Run,
    ) -> None:
        super().__init__()
        self.run = run  # its stop flags end training at the next step
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
            self.bar.set_postfix(train_success=f"{self.last['success_rate']:.2f}", refresh=False)
            self.bar.update(self.num_timesteps - self.bar.n)  # redraws at most once per mininterval

    def _on_step(self) -> bool:
        self.episodes.add(self.locals["rewards"], self.locals["dones"], self.locals["infos"])
        return self.run.keep_going()


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


class Sb3PPO(PpoSizing):
    """stable-baselines3's PPO (`train.algo: sb3`) on the physics envs, with rlcore's hyperparameters."""

    name = "sb3"
    summary_line = "estimated peak"
    resumes = False
    objectives = ("success_after_steps", "success_at_budget")

    def check(self, params: Params) -> None:
        check_physics_backend(self.name, params)

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
        """Train SB3 PPO; it starts fresh every time (no checkpoints)."""
        self.check(params)
        venv, note = normalised_vec_env(params, targets, res.n_envs)
        try:
            model = sb3_model(params, venv, res.policy_device)
            run = Sb3Run(lambda: to_bundle(model, venv if params.train.obs_norm else None, params))
            on_start(run, f"sb3 vec env: {note}")
            curriculum = curriculum_for(params, targets, venv, res.n_envs)
            recorder = _Recorder(on_iteration, params.train.total_steps, progress, curriculum, run)
            start = time.perf_counter()
            model.learn(params.train.total_steps, callback=recorder)
            wall = time.perf_counter() - start
            recorder._on_rollout_start()  # flush the last update's metrics
            if recorder.bar is not None:
                recorder.bar.close()
            if run.stop_requested:
                raise KeyboardInterrupt
            return TrainResult(run_summary(model, wall, recorder, curriculum), run.policy())
        finally:
            venv.close()
