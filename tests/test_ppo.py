"""On-device PPO: GAE, the loss, checkpoints and resume, NaN handling, determinism, DirectML audit."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rlcore.algos.ppo.algorithm import PPO, NonFiniteLossError
from rlcore.algos.ppo.storage import RolloutStorage
from rlcore.algos.ppo.trainer import Trainer
from rlcore.config.schema import Params
from rlcore.envs.batched import BatchedReachEnv
from rlcore.policy.networks import ActorCritic, RunningNorm
from rlcore.runtime.probes import Capabilities

DML_CAPS = Capabilities(float64=False, foreach=False, fused_adam=False, compile=False, synchronize=False)


def tiny_params(**train) -> Params:
    t = {
        "n_steps": 8,
        "epochs": 2,
        "minibatches": 2,
        "actor_hidden": [32, 32],
        "critic_hidden": [32, 32],
        "total_steps": 8 * 16 * 3,
        "checkpoint_every": 1,
        **train,
    }
    return Params.model_validate({"robot": {"ee_link": "flange"}, "env": {"backend": "twin"}, "train": t})


def test_gae_matches_slow_reference():
    torch.manual_seed(0)
    T, N, gamma, lam = 7, 5, 0.97, 0.9
    s = RolloutStorage(T, N, 3, 2, torch.device("cpu"))
    s.rewards = torch.randn(T, N)
    s.values = torch.randn(T, N)
    s.dones = (torch.rand(T, N) < 0.3).float()
    last = torch.randn(N)
    s.compute_gae(last, gamma, lam)
    for env in range(N):
        for t in range(T):
            adv, discount = 0.0, 1.0
            for k in range(t, T):  # sum of discounted TD errors until the episode ends
                next_v = last[env] if k == T - 1 else s.values[k + 1, env]
                nd = 1.0 - s.dones[k, env]
                delta = s.rewards[k, env] + gamma * next_v * nd - s.values[k, env]
                adv += discount * delta
                discount *= gamma * lam * nd
                if nd == 0:
                    break
            assert s.advantages[t, env].item() == pytest.approx(float(adv), abs=1e-5)
    assert torch.allclose(s.returns, s.advantages + s.values)


def test_loss_matches_hand_computation():
    torch.manual_seed(0)
    params = tiny_params(clip_range=0.2, value_coef=0.5, entropy_coef=0.01)
    model = ActorCritic(4, 2, [8], [8], init_log_std=-0.3)
    ppo = PPO(model, params.train, DML_CAPS)
    batch = {
        "obs": torch.randn(6, 4),
        "actions": torch.randn(6, 2),
        "log_probs": torch.randn(6),
        "values": torch.randn(6),
        "advantages": torch.randn(6),
        "returns": torch.randn(6),
    }
    loss, parts = ppo.loss(batch)
    mean = model.actor(batch["obs"])
    std = math.exp(-0.3)
    logp = torch.distributions.Normal(mean, std).log_prob(batch["actions"]).sum(-1)  # reference only
    ratio = torch.exp(logp - batch["log_probs"])
    adv = batch["advantages"]
    policy = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    value = (model.critic(batch["obs"]).squeeze(-1) - batch["returns"]).pow(2).mean()
    entropy = torch.distributions.Normal(mean, std).entropy().sum(-1).mean()
    assert parts["policy_loss"].item() == pytest.approx(policy.item(), rel=1e-5)
    assert parts["value_loss"].item() == pytest.approx(value.item(), rel=1e-5)
    assert parts["entropy"].item() == pytest.approx(entropy.item(), rel=1e-5)
    assert loss.item() == pytest.approx((policy + 0.5 * value - 0.01 * entropy).item(), rel=1e-5)


def test_running_norm_matches_full_statistics():
    torch.manual_seed(0)
    norm = RunningNorm(3)
    data = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.5])
    for chunk in data.split(64):
        norm.update(chunk)
    assert torch.allclose(norm.mean, data.mean(0), atol=1e-4)
    assert torch.allclose(norm.var, data.var(0, unbiased=False), rtol=1e-3)
    assert norm.count.item() == pytest.approx(1000, abs=1e-3)


def make_trainer(params, tmp_path=None, n_envs=16):
    env = BatchedReachEnv(params.env, params.robot, None, n_envs, "cpu", seed=params.seed)
    return Trainer(params, env, torch.device("cpu"), DML_CAPS, tmp_path, n_levels=1)


def test_same_seed_same_metrics():
    a = make_trainer(tiny_params())
    a.train(progress=False)
    b = make_trainer(tiny_params())
    b.train(progress=False)
    keys = ["policy_loss", "value_loss", "approx_kl", "explained_variance", "episode_return"]
    for ra, rb in zip(a.history, b.history, strict=True):
        for k in keys:
            assert (math.isnan(ra[k]) and math.isnan(rb[k])) or ra[k] == rb[k], k
    c = make_trainer(tiny_params().model_copy(update={"seed": 1}))
    c.train(progress=False)
    assert c.history[-1]["policy_loss"] != a.history[-1]["policy_loss"]


def test_checkpoint_roundtrip(tmp_path):
    params = tiny_params()
    a = make_trainer(params, tmp_path)
    a.extra["run_id"] = "abc"
    a.train(progress=False)
    b = make_trainer(params, tmp_path)
    note = b.try_resume()
    assert note and "resumed" in note
    assert b.global_step == a.global_step and b.extra["run_id"] == "abc"
    assert len(b.history) == len(a.history)
    for (k, v), v2 in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, v2), k
    assert torch.equal(a.norm.count, b.norm.count) and a.norm.count.item() > 100
    # a checkpoint is also a policy file for `evaluate --model`
    from rlcore.policy.file import load_policy

    policy, _ = load_policy(str(tmp_path / "last.pt"))
    obs = torch.randn(4, b.env.obs_dim)
    assert torch.allclose(policy(obs), b.model.actor(b.norm(obs)).clamp(-1, 1))
    # other params: the checkpoint is set aside, not loaded
    c = make_trainer(params.model_copy(update={"seed": 5}), tmp_path)
    assert "other params" in c.try_resume() and c.global_step == 0


def test_nan_loss_stops_with_clear_error(tmp_path):
    t = make_trainer(tiny_params(), tmp_path)
    with torch.no_grad():
        t.model.critic[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="NaN or inf"):
        t.train(progress=False)
    assert not (tmp_path / "last.pt").exists()  # nothing bad was checkpointed


class OpRecorder(TorchDispatchMode):
    """Every aten op dispatched, tagged with the training phase it ran in."""

    def __init__(self):
        super().__init__()
        self.phase = "rollout"
        self.ops: list[tuple[str, str]] = []
        self.float64: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func)
        self.ops.append((self.phase, name))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.float64.append(name)
        return out


FALLBACK_OPS = ("_foreach", "lerp", "aten.normal", "_fused_adam")


def test_directml_readiness_audit(monkeypatch):
    """The real Trainer.train, one update, on DirectML's capability flags: no op known to fall
    back to the CPU on DirectML, nothing float64, and no host sync inside the rollout."""
    params = tiny_params(total_steps=8 * 16)  # one update of 16 envs x 8 steps
    trainer = make_trainer(params)
    recorder = OpRecorder()
    update = trainer.ppo.update

    def phased_update(*args, **kwargs):
        recorder.phase = "update"
        try:
            return update(*args, **kwargs)
        finally:
            recorder.phase = "after update"  # the once-per-update host work: metrics, curriculum

    monkeypatch.setattr(trainer.ppo, "update", phased_update)
    with recorder:
        trainer.train(progress=False)
    assert trainer.iteration == 1
    phases = {phase for phase, _ in recorder.ops}
    assert {"rollout", "update", "after update"} <= phases  # the audit saw all of train()
    bad = sorted({op for _, op in recorder.ops if any(f in op for f in FALLBACK_OPS)})
    assert not bad, f"ops that fall back on DirectML: {bad}"
    assert not recorder.float64, f"float64 tensors from: {sorted(set(recorder.float64))}"
    rollout = [op for phase, op in recorder.ops if phase == "rollout"]
    assert "aten._local_scalar_dense.default" not in rollout  # no device->host sync per step
    assert len([op for phase, op in recorder.ops if phase == "update"]) > 50


@pytest.mark.parametrize("activation", ["elu", "tanh", "relu", "silu"])
@pytest.mark.parametrize("clip_value", [None, 0.1])
def test_fused_gradient_matches_autograd(activation, clip_value):
    """The hand-written backward of FusedActorCritic gives autograd's gradient of PPO.loss."""
    torch.manual_seed(0)
    params = tiny_params(clip_value=clip_value, entropy_coef=0.01, value_coef=0.7, clip_range=0.1)
    model = ActorCritic(5, 3, [16, 8], [16, 8], activation, init_log_std=-0.4)
    ppo = PPO(model, params.train, DML_CAPS)
    assert ppo.fused is not None
    n = 40
    batch = {
        "obs": torch.randn(n, 5),
        "actions": torch.randn(n, 3),
        "log_probs": torch.randn(n) - 3,  # ratios on both sides of the clip range
        "values": torch.randn(n),
        "advantages": torch.randn(n),
        "returns": torch.randn(n),
    }
    loss, parts = ppo.loss(batch)
    ppo.flat.zero_grad()
    loss.backward()
    reference = ppo.flat.grad.clone()
    assert reference.abs().min() < reference.abs().max()  # a real gradient
    ppo.flat.grad.fill_(123.0)  # every element must be overwritten
    stats = ppo.fused.loss_and_grad(batch)
    assert torch.allclose(ppo.flat.grad, reference, atol=1e-6, rtol=1e-5)
    expected = torch.stack([parts[k] for k in ("policy_loss", "value_loss", "approx_kl", "clip_fraction")])
    assert torch.allclose(stats, expected, atol=1e-6)
    # the fused forward is the model's forward
    mean, values, _ = ppo.fused.forward(batch["obs"])
    assert torch.allclose(mean, model.actor(batch["obs"]), atol=1e-6)
    assert torch.allclose(values, model.critic(batch["obs"]).squeeze(-1), atol=1e-6)


def test_flat_parameters_are_views_and_unequal_widths_use_autograd():
    model = ActorCritic(4, 2, [8], [6])
    ppo = PPO(model, tiny_params().train, DML_CAPS)
    assert ppo.fused is None  # actor and critic widths differ: the autograd path
    with torch.no_grad():
        ppo.flat.param.zero_()
    assert all(p.abs().sum() == 0 for p in model.parameters())  # parameters live in the flat buffer
    assert all(p.grad.data_ptr() >= ppo.flat.grad.data_ptr() for p in model.parameters())
    batch = {k: torch.randn(6, 4 if k == "obs" else 2) for k in ("obs", "actions")}
    batch.update({k: torch.randn(6) for k in ("log_probs", "values", "advantages", "returns")})
    loss, _ = ppo.loss(batch)
    loss.backward()
    assert ppo.flat.grad.abs().sum() > 0  # autograd accumulated into the flat gradient


def test_a_second_bad_checkpoint_replaces_the_one_set_aside(tmp_path):
    """A corrupt checkpoint is set aside as last.corrupt even when one is there already. (On
    Windows a rename onto an existing file raises and Path.replace does not; on Linux both
    overwrite, so here this checks the set-aside itself.)"""
    (tmp_path / "last.corrupt").write_bytes(b"an older one")
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    note = make_trainer(tiny_params(), tmp_path).try_resume()
    assert "unreadable" in note and (tmp_path / "last.corrupt").read_bytes() == b"not a checkpoint"
    assert not (tmp_path / "last.pt").exists()
