"""The training loop: collect a rollout on the device, update, curriculum, checkpoints.

Read it top to bottom in `Trainer.train`. Both env backends (the batched twin and PyBullet through
SB3 VecEnvs) give the same tensor API, so the algorithm does not know which one it drives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore.algos.ppo.algorithm import PPO
from rlcore.algos.ppo.storage import RolloutStorage
from rlcore.config.schema import Params
from rlcore.envs.targets import Curriculum
from rlcore.policy.file import gaussian_bundle
from rlcore.policy.networks import ActorCritic, RunningNorm
from rlcore.runtime import devices
from rlcore.runtime.devices import PeakMemory
from rlcore.runtime.memory import minibatch_size
from rlcore.runtime.probes import Capabilities
from rlcore.runtime.sharing import CoreShare

CHECKPOINT = "last.pt"


class Trainer:
    """PPO on one device against one env; resumable through atomic checkpoints."""

    def __init__(
        self,
        params: Params,
        env: Any,
        device: torch.device,
        caps: Capabilities,
        checkpoint_dir: str | Path | None = None,
        n_levels: int = 1,
    ) -> None:
        self.params = params
        self.cfg = params.train
        self.env = env
        self.device = device
        torch.manual_seed(params.seed)
        np.random.seed(params.seed)
        self.model = ActorCritic(
            env.obs_dim,
            env.act_dim,
            self.cfg.actor_hidden,
            self.cfg.critic_hidden,
            self.cfg.activation,
            self.cfg.init_log_std,
        ).to(device)
        self.norm = RunningNorm(env.obs_dim).to(device) if self.cfg.obs_norm else None
        self.ppo = PPO(self.model, self.cfg, caps)
        self.curriculum = Curriculum.from_config(params.env.curriculum, n_levels, in_flight=env.num_envs)
        self.storage = RolloutStorage(self.cfg.n_steps, env.num_envs, env.obs_dim, env.act_dim, device)
        self.batch_size = minibatch_size(params.train, env.num_envs)
        self.global_step = 0
        self.iteration = 0
        self.extra: dict[str, Any] = {}  # saved with checkpoints (e.g. the MLflow run id)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.history: list[dict[str, float]] = []
        self.stop_requested = False  # set from a signal handler: stop at the next update boundary
        self.finish_requested = False  # a caller's time limit: finish after this update, as at total_steps
        self.env_resumed = False  # load_state_dict restored the env's episodes (batched twin)
        # torch.compile per train.compile: the twin's step (where the env has one) and the policy forward
        self.compile_notes = [env.compile(self.cfg.compile)] if hasattr(env, "compile") else []
        example_obs = torch.zeros(env.num_envs, env.obs_dim, device=device)
        self.compile_notes.append(self.ppo.compile(self.cfg.compile, example_obs))
        # CPU threads, split evenly with the other rlcore jobs on this machine and re-counted as it
        # trains (rlcore.runtime.sharing): the twin's whole iteration; with PyBullet worker
        # processes, the update (they own the cores while they step and sleep while it runs)
        on_cpu = device.type == "cpu"
        self.share = CoreShare(params.hardware.cores) if on_cpu else None
        self.share_rollout = on_cpu and params.env.backend == "twin"
        self.share_update = self.share_rollout or (on_cpu and getattr(env, "workers", 0) > 1)

    @property
    def tags(self) -> dict[str, str]:
        """What the trainer chose on its own, as MLflow tags (rlcore.algos.base.RunHandle)."""
        return {"compile": "; ".join(self.compile_notes)}

    # -- the loop ------------------------------------------------------------------------------
    def train(
        self,
        on_iteration: Callable[[dict[str, float]], None] | None = None,
        progress: bool = True,
        total_steps: int | None = None,
    ) -> dict[str, float]:
        """Train until `train.total_steps`; returns a summary. Calls on_iteration(row) each update."""
        cfg, env, device = self.cfg, self.env, self.device
        total = total_steps or cfg.total_steps
        per_iter = cfg.n_steps * env.num_envs
        if self.env_resumed:  # the checkpoint's episodes go on where they were
            obs = env.obs.to(device)
            self.env_resumed = False
        else:  # a fresh start, or a PyBullet resume: new episodes (an episode boundary)
            env.set_level(self.curriculum.level)
            obs = env.reset().to(device)
        bar = _progress(total, self.global_step) if progress else None
        start = time.perf_counter()
        start_step = self.global_step
        # rows carry the last finished episodes' figures through updates where none ended
        last = self.history[-1] if self.history else {}
        last_success, last_return = last.get("success_rate", float("nan")), last.get("episode_return", float("nan"))
        while self.global_step < total:
            if cfg.lr_schedule != "adaptive":
                lr = cfg.learning_rate * (1 - self.global_step / total if cfg.lr_schedule == "linear" else 1.0)
                self.ppo.set_learning_rate(lr)
            threads = self.share.threads() if self.share else None
            with PeakMemory(device) as peak, devices.torch_threads(threads if self.share_rollout else None):
                t0 = time.perf_counter()
                # each step's ended episodes: flags and returns stay on the device until the update
                ended_done = torch.zeros(cfg.n_steps, env.num_envs, device=device)
                ended_success = torch.zeros_like(ended_done)
                ended_return = torch.zeros_like(ended_done)
                for t in range(cfg.n_steps):
                    obs_n = self._normalise(obs, update=True)
                    actions, log_probs, values = self.ppo.act(obs_n)
                    res = env.step(actions.to(env.device) if env.device != device else actions)
                    reward, done = res.reward.to(device), res.done.to(device)
                    if res.any_done:  # time-limit ends: bootstrap from the value of the last obs
                        final_values = self.model.value(self._normalise(res.final_obs.to(device)))
                        limit = done if res.terminated is None else done & ~res.terminated.to(device)
                        reward = reward + cfg.gamma * final_values * limit  # an obstacle's end: no future
                        ended_done[t] = done.float()
                        ended_success[t] = (res.success.to(device) & done).float()
                        ended_return[t] = res.episode_return.to(device) * done
                    self.storage.add(obs_n, actions, log_probs, reward, done.float(), values)
                    obs = res.obs.to(device)
                last_values = self.model.value(self._normalise(obs))
                self.storage.compute_gae(last_values, cfg.gamma, cfg.gae_lambda)
                t1 = time.perf_counter()
                with devices.torch_threads(threads if self.share_update else None):
                    metrics = self.ppo.update(self.storage, self.batch_size)
                t2 = time.perf_counter()
            # one transfer per update: the episodes in the order they ended (same step: env index)
            done_np, success_np, return_np = torch.stack([ended_done, ended_success, ended_return]).cpu().numpy()
            mask = done_np > 0
            flags = success_np[mask] > 0
            if len(flags) > 0:
                last_success, last_return = float(flags.mean()), float(return_np[mask].mean())
                if self.curriculum.update(flags):
                    env.set_level(self.curriculum.level)
            self.global_step += per_iter
            self.iteration += 1
            elapsed = time.perf_counter() - start
            row = {
                "step": self.global_step,
                "iteration": self.iteration,
                "wall_s": elapsed,
                "fps": (self.global_step - start_step) / max(elapsed, 1e-9),
                "success_rate": last_success,
                "episode_return": last_return,
                "curriculum_level": float(self.curriculum.level),
                "rollout_s": t1 - t0,
                "update_s": t2 - t1,
                "peak_memory_mb": peak.peak_mb if peak.peak_mb is not None else float("nan"),
                "cpu_threads": float(threads) if threads else float("nan"),  # its share of the cores
                **metrics,
            }
            self.history.append(row)
            if on_iteration:
                on_iteration(row)
            if bar is not None:
                # postfix first without a redraw: update() redraws at most once per mininterval
                bar.set_postfix(
                    fps=f"{row['fps']:,.0f}",
                    train_success=f"{last_success:.2f}",
                    level=self.curriculum.level,
                    refresh=False,
                )
                bar.update(per_iter)
            if self.checkpoint_dir and self.iteration % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if self.stop_requested:  # a Ctrl-C, honoured between updates
                if bar is not None:
                    bar.close()
                raise KeyboardInterrupt
            if self.finish_requested:
                break
        if bar is not None:
            bar.close()
        if self.checkpoint_dir:
            self.save_checkpoint()
        wall = time.perf_counter() - start
        return {
            "steps": self.global_step,
            "wall_s": wall,
            "fps": (self.global_step - start_step) / max(wall, 1e-9),
            "success_rate": last_success,
            "episode_return": last_return,
            "curriculum_level": self.curriculum.level,
            "iterations": self.iteration,
        }

    def _normalise(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        if self.norm is None:
            return obs
        if update:
            self.norm.update(obs)
        return self.norm(obs)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        gen = getattr(self.env, "generator", None)
        env_state = getattr(self.env, "state_dict", None)
        return {
            "model": self.model.state_dict(),
            "norm": self.norm.state_dict() if self.norm is not None else None,
            "optimizer": self.ppo.optimizer.state_dict(),
            "curriculum": self.curriculum.state_dict(),
            "global_step": self.global_step,
            "iteration": self.iteration,
            "torch_rng": torch.get_rng_state(),
            "env_rng": gen.get_state() if gen is not None else None,
            "env": env_state() if env_state is not None else None,  # the batched twin's episodes
            "params_hash": self.params.section_hash("robot", "targets", "env", "train", "seed"),
            "params": self.params.model_dump(),
            "obs_dim": self.env.obs_dim,
            "act_dim": self.env.act_dim,
            "extra": self.extra,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.norm is not None and state["norm"] is not None:
            self.norm.load_state_dict(state["norm"])
        self.ppo.optimizer.load_state_dict(state["optimizer"])
        self.curriculum.load_state_dict(state["curriculum"])
        self.global_step = int(state["global_step"])
        self.iteration = int(state["iteration"])
        torch.set_rng_state(state["torch_rng"].cpu())
        gen = getattr(self.env, "generator", None)
        if gen is not None and state["env_rng"] is not None:
            gen.set_state(state["env_rng"].cpu())
        if state.get("env") is not None and hasattr(self.env, "load_state_dict"):
            self.env.load_state_dict(state["env"])
            self.env_resumed = True
        self.extra = dict(state["extra"])
        self.history = list(state.get("history", []))

    def save_checkpoint(self) -> Path:
        """Write checkpoint_dir/last.pt atomically (temp file, then rename)."""
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def try_resume(self) -> str | None:
        """Resume from checkpoint_dir/last.pt if it exists and matches these params.

        Returns a note on what happened (None when there was nothing to resume)."""
        if not self.checkpoint_dir or not (self.checkpoint_dir / CHECKPOINT).is_file():
            return None
        path = self.checkpoint_dir / CHECKPOINT
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"it holds a {type(state).__name__}, not a checkpoint")
        except Exception as err:  # noqa: BLE001 - a corrupt checkpoint is set aside, not fatal
            path.replace(path.with_suffix(".corrupt"))
            return f"checkpoint {path} unreadable ({' '.join(str(err).split())[:160]}); set aside, starting fresh"
        if state.get("params_hash") != self.state_dict()["params_hash"]:
            path.replace(path.with_suffix(".stale"))
            return f"checkpoint {path} was made with other params; set aside, starting fresh"
        self.load_state_dict(state)
        return f"resumed from {path} at step {self.global_step:,}"

    def policy(self) -> dict[str, Any]:
        """The exportable policy bundle (models/policy.pt)."""
        return gaussian_bundle(
            self.model, self.norm, self.params.model_dump(), "rlcore", self.env.obs_dim, self.env.act_dim
        )


def _progress(total: int, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", unit_scale=True, desc="train", dynamic_ncols=True, mininterval=1.0
    )
