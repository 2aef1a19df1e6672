"""The PPO update: clipped surrogate, (optionally clipped) value loss, entropy bonus,
gradient-norm clipping and a target-KL early stop. One host sync per epoch."""

from __future__ import annotations

import torch

from rlcore.algos.ppo.adam import make_adam
from rlcore.algos.ppo.flat import FlatParameters
from rlcore.algos.ppo.fused import FusedActorCritic
from rlcore.algos.ppo.storage import RolloutStorage
from rlcore.config.schema import TrainConfig
from rlcore.policy.networks import LOG_2PI, ActorCritic
from rlcore.runtime.probes import Capabilities


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf: training stops and keeps the last good checkpoint."""


STATS = ("policy_loss", "value_loss", "approx_kl", "clip_fraction", "grad_norm")


class PPO:
    """Owns the optimizer and turns a filled RolloutStorage into one policy update.

    The parameters live in one flat buffer (FlatParameters), so zeroing, clipping and the Adam
    step cost a few kernels per minibatch; where the actor and critic have equal widths, the loss
    gradient comes from FusedActorCritic (by hand, checked against this class's autograd loss).
    Per-minibatch statistics are stacked into one tensor and read back once per epoch."""

    def __init__(self, model: ActorCritic, cfg: TrainConfig, caps: Capabilities) -> None:
        self.model = model
        self.cfg = cfg
        self.flat = FlatParameters(model, model.flat_order())
        self.fused = FusedActorCritic(model, self.flat, cfg) if FusedActorCritic.supports(model) else None
        self.optimizer = make_adam([self.flat.param], cfg.learning_rate, caps)
        self._forward = self.forward  # compile() may swap in a compiled copy

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled actions, their log-probs and values for normalised observations."""
        mean, values = self._forward(obs)
        log_std = self.model.log_std.detach()
        noise = torch.randn_like(mean)
        actions = mean + torch.exp(log_std) * noise
        log_probs = -0.5 * noise.square().sum(-1) - (log_std.sum() + 0.5 * LOG_2PI * mean.shape[-1])
        return actions, log_probs, values

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action means, values): the policy's forward pass, without sampling."""
        if self.fused is not None:
            mean, values, _ = self.fused.forward(obs)
            return mean, values
        return self.model.actor(obs), self.model.critic(obs).squeeze(-1)

    def compile(self, setting: str, example_obs: torch.Tensor) -> str:
        """Compile the forward pass per `train.compile` (rlcore.runtime.compiling); returns what happened."""
        from rlcore.runtime.compiling import compiled

        with torch.no_grad():
            self._forward, note = compiled(
                self.forward, setting, example_obs.device, example_obs, what="policy forward"
            )
        return note

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The PPO loss on one minibatch (advantages already normalised), with its parts."""
        loss, stats = self._loss(batch)
        parts = dict(zip(STATS[:-1], stats.unbind()))
        parts["entropy"] = self.model.entropy().detach()
        return loss, parts

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, stacked statistics without grad_norm). The entropy of a state-independent
        Gaussian is the same for every sample: one term, only when it has a weight."""
        cfg = self.cfg
        log_probs, values = self.model.log_prob_and_value(batch["obs"], batch["actions"])
        log_ratio = log_probs - batch["log_probs"]
        ratio = torch.exp(log_ratio)
        adv = batch["advantages"]
        surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range) * adv)
        policy_loss = -surrogate.mean()
        if cfg.clip_value is not None:
            clipped = batch["values"] + (values - batch["values"]).clamp(-cfg.clip_value, cfg.clip_value)
            value_loss = torch.maximum(
                (values - batch["returns"]).square(), (clipped - batch["returns"]).square()
            ).mean()
        else:
            value_loss = (values - batch["returns"]).square().mean()
        loss = policy_loss + cfg.value_coef * value_loss
        if cfg.entropy_coef:
            loss = loss - cfg.entropy_coef * self.model.entropy()
        with torch.no_grad():
            stats = torch.stack(
                [
                    policy_loss,
                    value_loss,
                    ((ratio - 1) - log_ratio).mean(),  # approx KL
                    ((ratio - 1).abs() > cfg.clip_range).float().mean(),  # clip fraction
                ]
            )
        return loss, stats

    def update(
        self, storage: RolloutStorage, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Epochs of minibatch updates; returns mean metrics (synced to the host once per epoch)."""
        cfg = self.cfg
        storage.normalise_advantages()
        totals = torch.zeros(len(STATS), device=storage.device)
        count = 0
        epochs_done = 0
        for _ in range(cfg.epochs):
            epoch = torch.zeros(len(STATS), device=storage.device)
            epoch_n = 0
            for batch in storage.minibatches(batch_size, generator):
                if self.fused is not None:  # hand-written gradient of the same loss
                    stats = self.fused.loss_and_grad(batch)
                else:
                    loss, stats = self._loss(batch)
                    self.flat.zero_grad()
                    loss.backward()
                grad_norm = self.flat.clip_grad_norm(cfg.max_grad_norm)
                self.optimizer.step()
                epoch += torch.cat([stats, grad_norm.detach().reshape(1)])
                epoch_n += 1
            totals += epoch
            count += epoch_n
            epochs_done += 1
            # the one host sync per epoch: NaN check (a NaN loss makes its sum NaN) and the KL rule
            means = (epoch / max(epoch_n, 1)).cpu()
            if not bool(torch.isfinite(means[:2]).all()):
                raise NonFiniteLossError("a PPO loss became NaN or inf; lower train.learning_rate or check the env")
            kl = float(means[STATS.index("approx_kl")])
            if cfg.target_kl is None:
                continue
            if cfg.lr_schedule == "adaptive":  # rsl_rl's rule: keep the KL per epoch near target_kl
                lr = self.optimizer.param_groups[0]["lr"]
                if kl > 2.0 * cfg.target_kl:
                    self.set_learning_rate(max(lr / 1.5, 1e-5))
                elif kl < 0.5 * cfg.target_kl:
                    self.set_learning_rate(min(lr * 1.5, 1e-2))
            elif kl > 1.5 * cfg.target_kl:
                break
        with torch.no_grad():
            var = storage.returns.var()
            ev = 1 - (storage.returns - storage.values).var() / (var + 1e-8)
            summary = torch.cat([totals / max(count, 1), self.model.entropy().reshape(1), ev.reshape(1)])
        values = summary.cpu().tolist()
        metrics = dict(zip((*STATS, "entropy", "explained_variance"), values))
        metrics["epochs"] = float(epochs_done)
        metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        return metrics
