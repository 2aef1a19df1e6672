"""rlcore's PPO as the algorithm the registry names `rlcore`: it builds the env of `env.backend`
and a `Trainer` on the resolved devices, resumes from a checkpoint where one fits, and trains."""

from __future__ import annotations

from pathlib import Path

from rlcore.algos.base import OnIteration, OnStart, PpoSizing, Resolved, TrainResult, TrainSummary
from rlcore.algos.ppo.trainer import Trainer
from rlcore.config.schema import Params
from rlcore.envs.factory import make_env
from rlcore.envs.targets import TargetCache
from rlcore.runtime import devices
from rlcore.runtime.probes import capabilities


class RlcorePPO(PpoSizing):
    """rlcore's on-device PPO (`train.algo: rlcore`) on either env backend; resumes from checkpoints."""

    name = "rlcore"
    summary_line = "estimated peak"
    resumes = True
    objectives = ("success_after_steps", "success_at_budget")

    def check(self, params: Params) -> None:
        """Runs on every backend and device: nothing to refuse."""

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
        """Build the env and the trainer, resume where a checkpoint allows, train. A Ctrl-C
        (KeyboardInterrupt) saves the last finished update first."""
        policy_device = devices.torch_device(res.policy_device)
        env = make_env(params, targets, res.n_envs, devices.torch_device(res.env_device), params.seed)
        try:
            trainer = Trainer(params, env, policy_device, capabilities(policy_device), checkpoint_dir, targets.n_levels)
            on_start(trainer, trainer.try_resume())
            try:
                summary = trainer.train(on_iteration, progress=progress)
            except KeyboardInterrupt:  # keep everything up to the last finished update
                if checkpoint_dir is not None and trainer.iteration > 0:
                    trainer.save_checkpoint()
                raise
            return TrainResult(TrainSummary(**summary, history=trainer.history), trainer.policy())
        finally:
            close = getattr(env, "close", None)
            if close:
                close()
