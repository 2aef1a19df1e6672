"""The policy file (models/policy.pt) for every algorithm: one versioned format that evaluation,
export, the tuner and the notebook read.

A policy is an observation normaliser (or none) followed by a head that maps normalised
observations to an action in [-1, 1] per joint:

- ``gaussian`` (rlcore PPO, SB3 PPO): the actor's mean, clipped to [-1, 1];
- ``squashed`` (SB3 SAC): tanh of the actor's mean, SB3's deterministic action;
- ``discrete`` (SB3 DQN): the row of the action table at the argmax of the Q-values.

Format 2 names the head in ``kind``; format-1 files (PPO only, before this format) still load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlcore.policy.networks import ACTIVATIONS, ActorCritic, RunningNorm

POLICY_FORMAT = 2
KINDS = ("gaussian", "squashed", "discrete")


def plain_mlp(sizes: list[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    """Linear layers with the activation between them (SB3's create_mlp layout: indices 0, 2, ...)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ClampedMean(nn.Module):
    """PPO's deterministic action: the actor's mean, clipped to the action range."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x).clamp(-1.0, 1.0)


class SquashedMean(nn.Module):
    """SAC's deterministic action: tanh(mu(latent_pi(x)))."""

    def __init__(self, latent_pi: nn.Sequential, mu: nn.Linear) -> None:
        super().__init__()
        self.latent_pi = latent_pi
        self.mu = mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mu(self.latent_pi(x)))


class GreedyTable(nn.Module):
    """DQN's deterministic action: the action-table row of the largest Q-value (first on ties,
    as torch.argmax in SB3's predict)."""

    def __init__(self, q_net: nn.Sequential, table: torch.Tensor) -> None:
        super().__init__()
        self.q_net = q_net
        self.register_buffer("table", table.to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[self.q_net(x).argmax(dim=-1)]


class Policy(nn.Module):
    """What evaluation and export run: normaliser (or none), then the head."""

    def __init__(self, head: nn.Module, norm: RunningNorm | None, kind: str = "gaussian") -> None:
        super().__init__()
        self.head = head
        self.norm = norm
        self.kind = kind

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            obs = self.norm(obs)
        return self.head(obs)


def make_bundle(
    kind: str,
    algo: str,
    head_state: dict[str, torch.Tensor],
    norm: RunningNorm | None,
    params_dict: dict,
    obs_dim: int,
    act_dim: int,
    **extra: Any,
) -> dict[str, Any]:
    """A format-2 policy file's contents: the head's weights, the normaliser, the config."""
    if kind not in KINDS:
        raise ValueError(f"policy kind {kind!r}: one of {', '.join(KINDS)}")
    return {
        "format": POLICY_FORMAT,
        "kind": kind,
        "algo": algo,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        # copies, never views of the live weights: a bundle taken while training keeps its values
        "model": {k: v.detach().cpu().clone() for k, v in head_state.items()},
        # the normaliser's tensors (mean, var, count); its exact host count matters to training only
        "norm": None
        if norm is None
        else {k: v.detach().cpu().clone() for k, v in norm.state_dict().items() if isinstance(v, torch.Tensor)},
        "params": params_dict,
        "workcell": workcell_record(params_dict),
        **extra,
    }


def workcell_record(params_dict: dict) -> dict[str, Any]:
    """The workcell a policy trains in, resolved when it is made (a YAML file may change later):
    its id (rlcore.config.workcell), name and obstacles."""
    from rlcore.config.workcell import resolve

    cell = resolve(params_dict.get("env", {}).get("workcell"))
    return {"id": cell.id, "name": cell.name, "obstacles": [o.model_dump(mode="json") for o in cell.obstacles]}


def gaussian_bundle(
    model: ActorCritic, norm: RunningNorm | None, params_dict: dict, algo: str, obs_dim: int, act_dim: int
) -> dict[str, Any]:
    """A PPO policy file (rlcore or SB3): the whole actor-critic's weights; the actor mean acts."""
    return make_bundle("gaussian", algo, model.state_dict(), norm, params_dict, obs_dim, act_dim)


def load_policy(path: str, device: torch.device | str = "cpu") -> tuple[Policy, dict]:
    """Load a policy file (torch.load with weights_only=True) as a deterministic policy."""
    bundle = read_bundle(path)
    return policy_from_bundle(bundle, device), bundle


def read_bundle(path: str) -> dict:
    """A policy file's bundle (torch.load with weights_only=True; a training checkpoint's policy
    part too), without building the policy: what `check_policy` reads first."""
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(bundle, dict) and "global_step" in bundle and "model" in bundle:  # a training checkpoint
        bundle = {
            "format": POLICY_FORMAT,
            "kind": "gaussian",
            "algo": "rlcore",
            **{k: bundle[k] for k in ("obs_dim", "act_dim", "model", "norm", "params")},
        }
    if not isinstance(bundle, dict) or bundle.get("format") not in (1, POLICY_FORMAT):
        raise ValueError(f"{path} is not an rlcore policy file (format 1 or {POLICY_FORMAT})")
    return bundle


def policy_from_bundle(bundle: dict, device: torch.device | str = "cpu") -> Policy:
    """The deterministic policy described by a policy bundle (format 1 or 2)."""
    kind = bundle.get("kind", "gaussian")  # format 1: PPO only
    t = bundle["params"]["train"]
    obs_dim, act_dim = bundle["obs_dim"], bundle["act_dim"]
    if kind == "gaussian":
        model = ActorCritic(obs_dim, act_dim, t["actor_hidden"], t["critic_hidden"], t["activation"])
        model.load_state_dict(bundle["model"])
        head: nn.Module = ClampedMean(model.actor)
    elif kind == "squashed":
        hidden = bundle["hidden"]
        head = SquashedMean(plain_mlp([obs_dim, *hidden], bundle["activation"], True), nn.Linear(hidden[-1], act_dim))
        head.load_state_dict(bundle["model"])
    elif kind == "discrete":
        table = bundle["model"]["table"]
        head = GreedyTable(plain_mlp([obs_dim, *bundle["hidden"], len(table)], bundle["activation"]), table)
        head.load_state_dict(bundle["model"])
    else:
        raise ValueError(f"policy kind {kind!r} is not known here (one of {', '.join(KINDS)})")
    norm = None
    if bundle["norm"] is not None:
        norm = RunningNorm(obs_dim)
        norm.load_state_dict(bundle["norm"])
    return Policy(head, norm, kind).to(device).eval()


class PolicyMismatch(ValueError):
    """A policy file that does not fit this run's robot or env, or holds non-finite weights."""


def robot_record(chain: Any, robot_urdf: str) -> dict[str, Any]:
    """What a policy file records of the robot it was trained on (the check below compares it)."""
    return {"urdf": robot_urdf, "ee_link": chain.ee_link, "sha256": chain.sha256, "dof": chain.dof}


def check_policy(bundle: dict, chain: Any, robot_urdf: str, env: Any, path: str) -> None:
    """Stop with one line when the policy in `path` cannot drive this run's robot (`chain`, from
    `robot_urdf`) in this run's env (`env`, the env section): other observation or action sizes,
    another URDF, another observation or action scaling, or non-finite weights."""
    from rlcore.envs.task import obs_size

    trained = bundle.get("robot") or {"urdf": bundle.get("params", {}).get("robot", {}).get("urdf", "?")}
    theirs = f"{trained['urdf']} ({bundle.get('obs_dim')} observations, {bundle.get('act_dim')} joints)"
    ours = f"{robot_urdf} ({obs_size(chain.dof)} observations, {chain.dof} joints)"
    advice = "retrain, or run with the params it was trained with"
    if (bundle.get("obs_dim"), bundle.get("act_dim")) != (obs_size(chain.dof), chain.dof):
        raise PolicyMismatch(f"policy {path} was trained for {theirs}; this run's robot is {ours}: {advice}")
    if trained.get("sha256") not in (None, chain.sha256):
        raise PolicyMismatch(
            f"policy {path} was trained on {trained['urdf']} (URDF sha256 {trained['sha256'][:12]}); this run's "
            f"robot is {robot_urdf} (sha256 {chain.sha256[:12]}): {advice}"
        )
    trained_env = bundle.get("params", {}).get("env", {})
    for key in ("offset_scale", "action_power", "control_hz"):
        if key in trained_env and trained_env[key] != getattr(env, key):
            raise PolicyMismatch(
                f"policy {path} was trained with env.{key} = {trained_env[key]}, this run has {getattr(env, key)}: "
                f"{advice}"
            )
    tensors = [*bundle.get("model", {}).values(), *(bundle.get("norm") or {}).values()]
    bad = [t for t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise PolicyMismatch(f"policy {path} holds non-finite weights (NaN or inf): retrain it")
