"""The PPO update: clipped surrogate, (optionally clipped) value loss, entropy bonus,
gradient-norm clipping and a target-KL early stop. One host sync per epoch."""

from __future__ import annotations

import torch

from rlcore.config import TrainConfig
from rlcore.hardware import Capabilities, clip_grad_norm, make_adam
from rlcore.ppo.policy import ActorCritic
from rlcore.ppo.storage import RolloutStorage


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf: training stops and keeps the last good checkpoint."""


class PPO:
    """Owns the optimizer and turns a filled RolloutStorage into one policy update."""

    def __init__(self, model: ActorCritic, cfg: TrainConfig, caps: Capabilities) -> None:
        self.model = model
        self.cfg = cfg
        self.optimizer = make_adam(model.parameters(), cfg.learning_rate, caps)
        self.foreach = caps.foreach
        self.params = list(model.parameters())

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The PPO loss on one minibatch (advantages already normalised), with its parts."""
        cfg = self.cfg
        log_probs, entropy, values = self.model.evaluate(batch["obs"], batch["actions"])
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
        entropy_mean = entropy.mean()
        loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy_mean
        with torch.no_grad():
            parts = {
                "policy_loss": policy_loss.detach(),
                "value_loss": value_loss.detach(),
                "entropy": entropy_mean.detach(),
                "approx_kl": ((ratio - 1) - log_ratio).mean(),
                "clip_fraction": ((ratio - 1).abs() > cfg.clip_range).float().mean(),
            }
        return loss, parts

    def update(
        self, storage: RolloutStorage, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Epochs of minibatch updates; returns mean metrics (synced to the host once per epoch)."""
        cfg = self.cfg
        adv = storage.advantages
        storage.advantages = (adv - adv.mean()) / (adv.std() + 1e-8)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        epochs_done = 0
        for _ in range(cfg.epochs):
            epoch_kl = torch.zeros((), device=storage.device)
            epoch_n = 0
            finite = torch.ones((), dtype=torch.bool, device=storage.device)
            for batch in storage.minibatches(batch_size, generator):
                loss, parts = self.loss(batch)
                finite &= torch.isfinite(loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                parts["grad_norm"] = clip_grad_norm(self.params, cfg.max_grad_norm, self.foreach)
                self.optimizer.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()
                epoch_kl += parts["approx_kl"]
                epoch_n += 1
                count += 1
            epochs_done += 1
            # the one host sync per epoch: NaN check and the target-KL early stop
            kl, ok = torch.stack([epoch_kl / max(epoch_n, 1), finite.float()]).cpu().tolist()
            if ok < 1:
                raise NonFiniteLossError("a PPO loss became NaN or inf; lower train.learning_rate or check the env")
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
        keys = list(sums)
        values = torch.stack([sums[k] for k in keys]).cpu().tolist() if keys else []
        metrics = {k: v / max(count, 1) for k, v in zip(keys, values)}
        metrics["epochs"] = float(epochs_done)
        metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        with torch.no_grad():
            var = storage.returns.var()
            ev = 1 - (storage.returns - storage.values).var() / (var + 1e-8)
        metrics["explained_variance"] = float(ev.cpu())
        return metrics
