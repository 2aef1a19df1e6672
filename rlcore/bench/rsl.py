"""`python -m rlcore.bench rsl`: rlcore PPO against rsl_rl's PPO (the one behind Isaac Lab) on
the same batched twin, with the same network, rollout, epochs, minibatches and learning-rate
schedule, on each usable device.

Two figures per device: end-to-end steps/s (the median of alternating rounds of a few updates
each), and held-out success (every held-out target, the twin at accurate physics) after equal
wall time of training. rsl_rl gets the twin through its VecEnv interface (RslTwinEnv) and the
twin's curriculum from the wrapper, so both see the same task. rsl-rl-lib needs torch >= 2.6:
it is in the `bench` extra (`pip install -e ".[bench]"`), not a core dependency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

from rlcore.bench.rounds import MIN_ROUNDS, SINGLE, alternate, machine, with_single_env
from rlcore.config.schema import Params
from rlcore.envs.targets import Curriculum, TargetCache
from rlcore.runtime import probes as hw
from rlcore.runtime.devices import synchronize, torch_device

INSTALL = 'rsl_rl is not installed: pip install -e ".[bench]" (rsl-rl-lib, torch >= 2.6)'


def import_rsl() -> Any:
    """rsl_rl's PPO and VecEnv, or SystemExit with the install line."""
    try:
        from rsl_rl.algorithms import PPO
        from rsl_rl.env import VecEnv
    except ImportError as err:
        raise SystemExit(f"error: {INSTALL} ({err})") from None
    return PPO, VecEnv


def rsl_config(params: Params) -> dict[str, Any]:
    """rsl_rl's runner config for rlcore's train section: the same sizes, rollout and schedule."""
    t = params.train
    model = {"class_name": "MLPModel", "activation": t.activation, "obs_normalization": t.obs_norm}
    return {
        "num_steps_per_env": t.n_steps,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "multi_gpu": None,
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": t.epochs,
            "num_mini_batches": t.minibatches,
            "clip_param": t.clip_range,
            "gamma": t.gamma,
            "lam": t.gae_lambda,
            "value_loss_coef": t.value_coef,
            "entropy_coef": t.entropy_coef,
            "learning_rate": t.learning_rate,
            "max_grad_norm": t.max_grad_norm,
            "use_clipped_value_loss": t.clip_value is not None,
            "schedule": "adaptive" if t.lr_schedule == "adaptive" else "fixed",
            "desired_kl": t.target_kl or 0.01,
        },
        "actor": {
            **model,
            "hidden_dims": list(t.actor_hidden),
            "distribution_cfg": {
                "class_name": "GaussianDistribution",
                "init_std": math.exp(t.init_log_std),
                "std_type": "log",
            },
        },
        "critic": {**model, "hidden_dims": list(t.critic_hidden)},
    }


def twin_env(params: Params, targets: TargetCache | None, n_envs: int, device: torch.device, seed: int) -> Any:
    """The batched twin behind rsl_rl's VecEnv interface (observations as a TensorDict group
    "policy", time-limit ends as extras["time_outs"]), with rlcore's curriculum inside."""
    from tensordict import TensorDict

    from rlcore.envs.batched import BatchedReachEnv

    _, VecEnv = import_rsl()  # noqa: N806 - rsl_rl's class

    class RslTwinEnv(VecEnv):
        def __init__(self) -> None:
            self.env = BatchedReachEnv(params.env, params.robot, targets, n_envs, device, seed=seed)
            self.num_envs, self.num_actions, self.device, self.cfg = n_envs, self.env.act_dim, device, {}
            self.max_episode_length = params.env.episode_steps
            self.episode_length_buf = torch.zeros(n_envs, dtype=torch.long, device=device)
            levels = targets.n_levels if targets is not None else 1
            self.curriculum = Curriculum.from_config(params.env.curriculum, levels, in_flight=n_envs)
            self.env.set_level(self.curriculum.level)
            self.obs = self.env.reset()

        def _group(self, obs: torch.Tensor) -> TensorDict:
            return TensorDict({"policy": obs}, batch_size=[self.num_envs])

        def get_observations(self) -> TensorDict:
            return self._group(self.obs)

        def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
            res = self.env.step(actions)
            self.obs = res.obs
            self.episode_length_buf = torch.where(res.done, 0, self.episode_length_buf + 1)
            if res.any_done and self.curriculum.update(res.success[res.done].cpu().numpy()):
                self.env.set_level(self.curriculum.level)
            done = res.done.float()
            return self._group(res.obs), res.reward, done, {"time_outs": done, "log": {}}

    return RslTwinEnv()


class RslTrainer:
    """rsl_rl's PPO driven as its OnPolicyRunner.learn does (rollout in inference mode, returns,
    update), one update per `train_updates` step, without the runner's logging."""

    def __init__(self, params: Params, targets: TargetCache | None, n_envs: int, device: torch.device) -> None:
        PPO, _ = import_rsl()  # noqa: N806 - rsl_rl's class
        torch.manual_seed(params.seed)
        self.env = twin_env(params, targets, n_envs, device, params.seed)
        self.cfg = rsl_config(params)
        self.alg = PPO.construct_algorithm(self.env.get_observations(), self.env, self.cfg, str(device))
        self.alg.train_mode()
        self.obs = self.env.get_observations()
        self.global_step = 0

    def train_updates(self, updates: int) -> int:
        for _ in range(updates):
            with torch.inference_mode():
                for _ in range(self.cfg["num_steps_per_env"]):
                    actions = self.alg.act(self.obs)
                    self.obs, rewards, dones, extras = self.env.step(actions)
                    self.alg.process_env_step(self.obs, rewards, dones, extras)
                self.alg.compute_returns(self.obs)
            self.alg.update()
            self.global_step += self.env.num_envs * self.cfg["num_steps_per_env"]
        return updates * self.env.num_envs * self.cfg["num_steps_per_env"]

    def policy(self) -> nn.Module:
        """The deterministic policy (normaliser and actor mean, clipped) for rlcore's evaluation."""
        actor = self.alg.get_policy()

        class Deterministic(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.actor = actor

            @torch.no_grad()
            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                from tensordict import TensorDict

                return self.actor(TensorDict({"policy": obs}, batch_size=[len(obs)])).clamp(-1.0, 1.0)

        return Deterministic()


class RlcoreTrainer:
    """rlcore's Trainer on the same twin, trained in whole updates."""

    def __init__(self, params: Params, targets: TargetCache | None, n_envs: int, device: torch.device) -> None:
        from rlcore.algos.ppo.trainer import Trainer
        from rlcore.envs.batched import BatchedReachEnv

        levels = targets.n_levels if targets is not None else 1
        env = BatchedReachEnv(params.env, params.robot, targets, n_envs, device, seed=params.seed)
        self.trainer = Trainer(params, env, device, hw.capabilities(device), None, levels)
        self.per_update = params.train.n_steps * n_envs

    @property
    def global_step(self) -> int:
        return self.trainer.global_step

    def train_updates(self, updates: int) -> int:
        self.trainer.train(progress=False, total_steps=self.trainer.global_step + updates * self.per_update)
        return updates * self.per_update

    def policy(self) -> nn.Module:
        from rlcore.policy.file import ClampedMean, Policy

        return Policy(ClampedMean(self.trainer.model.actor), self.trainer.norm)


MAKERS: dict[str, Callable[..., Any]] = {"rlcore": RlcoreTrainer, "rsl_rl": RslTrainer}


def parameter_count(trainer: Any) -> int:
    """Trainable parameters of the actor and critic (the same network on both sides)."""
    if isinstance(trainer, RslTrainer):
        modules = [trainer.alg.get_policy().mlp, trainer.alg.critic.mlp]
    else:
        modules = [trainer.trainer.model.actor, trainer.trainer.model.critic]
    return sum(p.numel() for m in modules for p in m.parameters())


def compare(
    params: Params,
    targets: TargetCache,
    devices: list[str],
    n_envs: int,
    budget_s: float,
    updates_per_round: int = 5,
    rounds: int = MIN_ROUNDS,
) -> dict[str, Any]:
    """Per device: both PPOs' steps/s in alternating rounds, then each trained for `budget_s` of
    wall time (alternating which goes first per device) and scored on every held-out target."""
    from rlcore.pipeline.evaluate import evaluate_batched

    rows = []
    speed_measures: dict[Hashable, Callable[[], float]] = {}
    for spec in devices:
        device = torch_device(spec)
        for name, make in MAKERS.items():
            trainer = make(params, targets, n_envs, device)
            trainer.train_updates(1)  # warm-up

            def measure(trainer: Any = trainer, device: torch.device = device) -> float:
                synchronize(device)
                start = time.perf_counter()
                steps = trainer.train_updates(updates_per_round)
                synchronize(device)
                return steps / (time.perf_counter() - start)

            speed_measures[(spec, name)] = measure
    speed = alternate(with_single_env(params, speed_measures), rounds)
    for d, spec in enumerate(devices):
        device = torch_device(spec)
        order = list(MAKERS) if d % 2 == 0 else list(reversed(MAKERS))
        for name in order:
            trainer = MAKERS[name](params, targets, n_envs, device)
            start = time.perf_counter()
            while time.perf_counter() - start < budget_s:
                trainer.train_updates(1)
            synchronize(device)
            wall = time.perf_counter() - start
            held_out = evaluate_batched(trainer.policy(), params, targets, None, seed=1000, device=spec)
            rows.append(
                {
                    "device": spec,
                    "ppo": name,
                    "steps_per_s": speed[(spec, name)].median,
                    "spread": speed[(spec, name)],
                    "budget_s": round(wall, 1),
                    "steps": trainer.global_step,
                    "parameters": parameter_count(trainer),
                    "success_rate": held_out["success_rate"],
                    "success_rate_low": held_out["success_rate_ci_low"],
                    "success_rate_high": held_out["success_rate_ci_high"],
                    "episodes": held_out["episodes"],
                }
            )
    return {"rows": rows, "rounds": rounds, "n_envs": n_envs, "machine": machine(speed, params)}


def text(result: dict[str, Any]) -> list[str]:
    """The comparison as printed lines."""
    from rlcore.bench.rounds import machine_text

    lines = [
        f"rlcore PPO vs rsl_rl PPO on the batched twin, {result['n_envs']} envs; steps/s: median of "
        f"{result['rounds']} alternating rounds; held-out: every held-out target, twin at accurate physics",
        f"{'device':>8} {'ppo':>7} {'steps/s':>10} {'spread':>7} {'trained':>9} {'steps':>11} "
        f"{'held-out 2 cm (95% CI)':>26}",
    ]
    for r in result["rows"]:
        ci = f"{r['success_rate']:.1%} ({r['success_rate_low']:.1%}-{r['success_rate_high']:.1%})"
        lines.append(
            f"{r['device']:>8} {r['ppo']:>7} {r['steps_per_s']:>10,.0f} {r['spread'].spread:>7.0%} "
            f"{r['budget_s']:>8.1f}s {r['steps']:>11,} {ci:>26}"
        )
    lines.append(machine_text(result["machine"]))
    return lines


__all__ = ["SINGLE", "compare", "rsl_config", "text", "twin_env"]
