"""The policy as one ONNX graph for a robot controller: observation normaliser, actor mean, action
clipping and the scaling to joint-velocity commands, with a dynamic batch.

Inputs: `obs`, float32 [N, obs_dim], raw units (the env's observation layout, in the model's
metadata). Outputs: `action`, float32 [N, dof], the normalised action in [-1, 1]; and
`joint_velocity`, float32 [N, dof], the command in rad/s (sign(a) |a|^env.action_power x the URDF
velocity limit; the action itself at the default power 1).

Exporter: torch.export-based (`torch.onnx.export(..., dynamo=True)`) on torch >= 2.9, where it is
torch's default; the TorchScript exporter on older torch (2.4.1, DirectML's pin), where the
torch.export-based one was not yet complete. `rlcore.policy.controller` runs the file without torch.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcore.config.schema import EnvConfig
from rlcore.envs.task import obs_size, velocity_fraction
from rlcore.policy.chain_fk import chain_joints
from rlcore.policy.file import Policy, policy_from_bundle
from rlcore.robots.chain import Chain

OPSET = 18
INPUTS, OUTPUTS = ["obs"], ["action", "joint_velocity"]


class ExportedPolicy(nn.Module):
    """The deterministic policy and the command scaling, as one module: obs -> (action, rad/s).
    The normaliser's statistics are plain buffers here (no running state to trace)."""

    def __init__(self, policy: Policy, velocity_limits: list[float], obs_dim: int, action_power: float = 1.0) -> None:
        super().__init__()
        self.head = policy.head  # PPO's clipped mean, SAC's tanh mean or DQN's greedy table row
        norm = policy.norm
        size = obs_dim
        mean = norm.mean if norm is not None else torch.zeros(size)
        std = torch.sqrt(norm.var + norm.eps) if norm is not None else torch.ones(size)
        self.clip = norm.clip if norm is not None else float("inf")
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.register_buffer("vmax", torch.tensor(velocity_limits, dtype=torch.float32))
        self.power = float(action_power)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((obs - self.mean) / self.std).clamp(-self.clip, self.clip)
        action = self.head(x)
        return action, velocity_fraction(action, self.power) * self.vmax


def exporter() -> str:
    """The exporter this torch uses: "dynamo" (torch.export-based) on torch >= 2.9, else "torchscript"."""
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    return "dynamo" if (major, minor) >= (2, 9) else "torchscript"


def observation_layout(dof: int) -> list[dict[str, Any]]:
    """What each slice of the observation holds, with its units (the env's layout)."""
    return [
        {"name": "joint_position_scaled", "start": 0, "size": dof, "units": "(q - mid) / half of the URDF limits"},
        {"name": "joint_velocity_scaled", "start": dof, "size": dof, "units": "qd / URDF velocity limit"},
        {"name": "flange_position", "start": 2 * dof, "size": 3, "units": "m, robot base frame"},
        {"name": "target_position", "start": 2 * dof + 3, "size": 3, "units": "m, robot base frame"},
        {"name": "target_minus_flange", "start": 2 * dof + 6, "size": 3, "units": "m"},
        {
            "name": "target_minus_flange_fine",
            "start": 2 * dof + 9,
            "size": 3,
            "units": "(target - flange) / max(|target - flange|, rlcore.offset_scale)",
        },
        {"name": "previous_action", "start": 2 * dof + 12, "size": dof, "units": "the last `action` output, [-1, 1]"},
    ]


def metadata(chain: Chain, control_hz: int, algo: str, offset_scale: float = 0.02) -> dict[str, str]:
    """The model's metadata (all strings): names, units, layout, the chain for the controller's FK,
    and the fine offset's scale (env.offset_scale) the observation needs."""
    joints = chain_joints(chain)
    return {
        "rlcore.format": "1",
        "rlcore.algo": algo,
        "rlcore.inputs": json.dumps({"obs": f"float32 [N, {obs_size(chain.dof)}], raw units (see layout)"}),
        "rlcore.outputs": json.dumps(
            {
                "action": f"float32 [N, {chain.dof}], normalised joint-velocity command in [-1, 1]",
                "joint_velocity": f"float32 [N, {chain.dof}], joint-velocity command in rad/s",
            }
        ),
        "rlcore.observation_layout": json.dumps(observation_layout(chain.dof)),
        "rlcore.joint_names": json.dumps([j.name for j in chain.movable]),
        "rlcore.control_hz": str(control_hz),
        "rlcore.offset_scale": repr(float(offset_scale)),
        "rlcore.chain": json.dumps({"root": chain.root, "ee_link": chain.ee_link, "joints": joints}),
        "rlcore.urdf_sha256": chain.sha256,
    }


def export_onnx(bundle: dict, chain: Chain, control_hz: int, path: str | Path, method: str | None = None) -> str:
    """Write the bundle's policy to `path` as ONNX (dynamic batch, metadata included); returns the
    exporter used ("dynamo" or "torchscript"; `method` forces one)."""
    import onnx

    method = method or exporter()
    env = {**EnvConfig().model_dump(), **bundle["params"].get("env", {})}
    limits = [j.velocity for j in chain.movable]
    module = ExportedPolicy(policy_from_bundle(bundle), limits, bundle["obs_dim"], env["action_power"]).eval()
    example = (torch.zeros(2, bundle["obs_dim"]),)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # exporter chatter (deprecations, skipped torchvision ops) is not the user's
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if method == "dynamo":
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                verbose=False,
            )
            program.save(str(path))
        elif method == "torchscript":
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}, "joint_velocity": {0: "batch"}},
                opset_version=OPSET,
                **({"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}),
            )
        else:
            raise ValueError(f"export.exporter = {method!r}: use auto, dynamo or torchscript")
    quiet.setLevel(level)
    model = onnx.load(str(path))
    extra = {"rlcore.exporter": method, "rlcore.policy_kind": bundle.get("kind", "gaussian")}
    extra["rlcore.action_power"] = repr(float(env["action_power"]))
    cell = bundle.get("workcell") or {"id": "none", "obstacles": []}  # files before workcells: free space
    extra["rlcore.workcell"] = cell["id"]
    extra["rlcore.workcell_obstacles"] = json.dumps(cell["obstacles"])
    for key, value in {
        **metadata(chain, control_hz, bundle.get("algo", "rlcore"), env["offset_scale"]),
        **extra,
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return method


def parity_observations(bundle: dict, params: Any, targets: Any, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """n float32 observations: half from the twin driven by the policy on held-out targets at the
    accurate physics (the states a controller meets), half drawn around the normaliser's
    statistics out to 4 standard deviations (states training rarely saw)."""
    from rlcore.envs.batched import BatchedReachEnv

    policy = policy_from_bundle(bundle)
    steps = params.env.episode_steps
    n_envs = max(1, (n // 2) // steps)
    env = BatchedReachEnv(params.env, params.robot, targets, n_envs, "cpu", mode="eval", seed=seed)
    obs, seen = env.reset(), []
    with torch.no_grad():
        for _ in range(steps):
            seen.append(obs)
            obs = env.step(policy(obs)).obs
    rollout = torch.cat(seen)[: n // 2].numpy()
    rng = np.random.default_rng(seed)
    norm = bundle.get("norm")
    mean = norm["mean"].numpy() if norm else np.zeros(bundle["obs_dim"], dtype=np.float32)
    std = np.sqrt(norm["var"].numpy()) if norm else np.ones(bundle["obs_dim"], dtype=np.float32)
    wide = mean + std * rng.uniform(-4.0, 4.0, (n - len(rollout), bundle["obs_dim"]))
    return np.concatenate([rollout, wide]).astype(np.float32)


def parity(bundle: dict, path: str | Path, obs: np.ndarray) -> dict[str, float]:
    """Largest |onnxruntime - torch| over `obs` for both outputs (the torch policy in float32)."""
    import onnxruntime as ort

    policy = policy_from_bundle(bundle)  # what evaluate runs
    with torch.no_grad():
        action = policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_action, ort_velocity = session.run(OUTPUTS, {"obs": obs.astype(np.float32)})
    meta = session.get_modelmeta().custom_metadata_map
    joints = json.loads(meta["rlcore.chain"])["joints"]
    limits = np.array([j["velocity"] for j in joints if j["movable"]], dtype=np.float32)
    fraction = velocity_fraction(action, float(meta.get("rlcore.action_power", "1.0")))
    return {
        "max_abs_action": float(np.abs(ort_action - action).max()),
        "max_abs_velocity_over_limit": float((np.abs(ort_velocity - fraction * limits) / limits).max()),
        "observations": int(len(obs)),
    }
