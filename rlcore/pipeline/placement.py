"""Placement by measurement: time on each usable device what training would run there, and
choose the policy and batched-env devices, with the previous decision as the incumbent."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rlcore.config.schema import HardwareConfig
from rlcore.robots.chain import chain_of
from rlcore.runtime.devices import MB, synchronize, torch_device
from rlcore.runtime.probes import HardwareError, Probe, _unknown, capabilities

# PyBullet envs by default: 64 x n_steps 16 = 1024 samples per update. With 16 envs (256 samples)
# the KL-adaptive learning rate collapsed and PyBullet training stalled near 66% success.
BULLET_ENVS = 64
CPU_BATCHED_ENVS = 256  # batched twin on a CPU: more updates per sample beat wider batches


@dataclass
class Placement:
    """The decisions the trainer reads: devices, n_envs, VRAM limit, and why."""

    policy_device: str
    env_device: str
    n_envs_physics: int
    n_envs_twin: int
    vram_limit_mb: float | None
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["vram_limit_mb"] = _unknown(self.vram_limit_mb)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Placement:
        """A decision as out/hardware.json holds it; ValueError naming what is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"'decision' is a {type(data).__name__}, not a mapping")
        missing = [k for k in ("policy_device", "env_device", "n_envs_physics", "n_envs_twin") if k not in data]
        if missing:
            raise ValueError(f"'decision' lacks {', '.join(missing)}")
        limit = data.get("vram_limit_mb")
        if not all(isinstance(data[k], int) and data[k] >= 1 for k in ("n_envs_physics", "n_envs_twin")):
            raise ValueError("'decision' n_envs_physics and n_envs_twin must be whole numbers >= 1")
        if not all(isinstance(data[k], str) and data[k] for k in ("policy_device", "env_device")):
            raise ValueError("'decision' policy_device and env_device must be device names such as 'cpu'")
        try:
            return cls(
                str(data["policy_device"]),
                str(data["env_device"]),
                int(data["n_envs_physics"]),
                int(data["n_envs_twin"]),
                None if limit in (None, "unknown") else float(limit),
                list(data.get("reasons", [])),
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"'decision' holds a value of the wrong type ({err})") from None

    def n_envs_for(self, backend: str) -> int:
        """The envs this machine runs best for an env backend."""
        return self.n_envs_twin if backend == "twin" else self.n_envs_physics


def _median_seconds(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_update(device: torch.device, params: Any, obs_dim: int, act_dim: int, n_envs: int, repeats: int = 3) -> float:
    """Seconds for one PPO update as training runs it on `device`: both networks at their widths
    and activation, the fused path where PPO takes it, epochs x minibatches over an
    n_steps x n_envs rollout with the minibatch those n_envs give."""
    from rlcore.algos.ppo.algorithm import PPO
    from rlcore.algos.ppo.storage import RolloutStorage
    from rlcore.policy.networks import ActorCritic
    from rlcore.runtime.memory import minibatch_size

    t = params.train
    torch.manual_seed(0)
    model = ActorCritic(obs_dim, act_dim, t.actor_hidden, t.critic_hidden, t.activation, t.init_log_std).to(device)
    ppo = PPO(model, t, capabilities(device))
    storage = RolloutStorage(t.n_steps, n_envs, obs_dim, act_dim, device)
    with torch.no_grad():
        for _ in range(t.n_steps):
            obs = torch.randn(n_envs, obs_dim, device=device)
            actions, log_probs, values = ppo.act(obs)
            storage.add(
                obs, actions, log_probs, torch.randn(n_envs, device=device), torch.zeros(n_envs, device=device), values
            )
        storage.compute_gae(model.value(obs), t.gamma, t.gae_lambda)
    batch = minibatch_size(params.train, n_envs)
    return _median_seconds(lambda: ppo.update(storage, batch), device, repeats)


def time_env(device: torch.device, params: Any, n_envs: int, steps: int = 10, repeats: int = 3) -> float:
    """Seconds per step of the batched env with n_envs on a device."""
    from rlcore.envs.batched import BatchedReachEnv

    env = BatchedReachEnv(params.env, params.robot, None, n_envs, device)
    env.reset()
    actions = torch.zeros(n_envs, env.act_dim, device=device)

    def block() -> None:
        for _ in range(steps):
            env.step(actions)

    return _median_seconds(block, device, repeats) / steps


def measure_devices(params: Any, probes: list[Probe]) -> dict[str, dict[str, float]]:
    """Time, on each usable device, what training would run there: one whole PPO update and a
    batched-env step at that device's own n_envs (each a median of repeats)."""
    from rlcore.envs.task import obs_size
    from rlcore.runtime.memory import bytes_per_env, minibatch_size

    dof = chain_of(params.robot).dof
    timings = {}
    for probe in probes:
        if not probe.usable:
            continue
        device = torch_device(probe.device)
        from rlcore.robots.collision import collision_points

        per_env = bytes_per_env(params.train, chain_of(params.robot), collision_points(params))
        n_envs = params.train.n_envs or batched_envs_for(probe, params.hardware, per_env)
        samples = n_envs * params.train.n_steps
        update_s = time_update(device, params, obs_size(dof), dof, n_envs)
        env_step_s = time_env(device, params, n_envs)
        timings[probe.device] = {
            "n_envs": n_envs,
            "minibatch": minibatch_size(params.train, n_envs),
            "update_s": update_s,
            "env_step_s": env_step_s,
            "update_sample_s": update_s / samples,
            "env_sample_s": env_step_s / n_envs,
        }
    return timings


def choose_placement(
    probes: list[Probe],
    timings: dict[str, dict[str, float]],
    cfg: HardwareConfig,
    bytes_per_env: float = 16384.0,
    previous: dict[str, Any] | None = None,
) -> Placement:
    """Decide devices and sizes from probes and measured timings (pure: testable with fakes).

    timings: {device: {"update_sample_s": ..., "env_sample_s": ...}} for each usable device, the
    update's and the env's seconds per sample at that device's own n_envs; bytes_per_env: device
    memory one batched env needs. `previous` (the last decision on this machine) is the
    incumbent: another device replaces it only when it is `gpu_margin` times faster, so timings
    near the margin do not flip the decision (and retrain the pipeline) from one run to the next.
    """
    usable = {p.device: p for p in probes if p.usable}
    reasons: list[str] = []
    if cfg.device != "auto":
        wanted = cfg.device if ":" in cfg.device or cfg.device in ("cpu", "mps") else f"{cfg.device}:0"
        match = [p for p in probes if p.device == wanted or (p.device is None and wanted.startswith(p.backend))]
        if wanted not in usable:
            why = match[0].reason if match else "no such device"
            raise HardwareError(f"hardware.device = {cfg.device!r} is not usable: {why}")
        policy = env = wanted
        reasons.append(f"hardware.device = {cfg.device} (explicit)")
    else:
        for p in probes:
            if not p.usable:
                reasons.append(f"{p.backend}: skipped ({p.reason})")
        previous = previous or {}
        policy = _fastest(
            usable, timings, "update_sample_s", cfg.gpu_margin, reasons, "policy", previous.get("policy_device")
        )
        env = _fastest(
            usable, timings, "env_sample_s", cfg.gpu_margin, reasons, "batched env", previous.get("env_device")
        )
    limit = vram_limit(usable[env], cfg)
    n_bullet = cfg.n_envs_physics or BULLET_ENVS
    n_batched = cfg.n_envs_twin or _default_batched_envs(env, limit, bytes_per_env)
    return Placement(policy, env, n_bullet, n_batched, limit, reasons)


def vram_limit(probe: Probe, cfg: HardwareConfig) -> float | None:
    """hardware.vram_limit_mb, else a GPU's total memory x vram_safety_fraction (None on a CPU)."""
    if cfg.vram_limit_mb is not None:
        return cfg.vram_limit_mb
    if probe.memory_total_mb is not None and probe.device != "cpu":
        return probe.memory_total_mb * cfg.vram_safety_fraction
    return None


def batched_envs_for(probe: Probe, cfg: HardwareConfig, bytes_per_env: float) -> int:
    """The batched twin's n_envs if `probe`'s device were chosen (what placement times there)."""
    return cfg.n_envs_twin or _default_batched_envs(probe.device, vram_limit(probe, cfg), bytes_per_env)


def _fastest(
    usable: dict[str, Probe],
    timings: dict[str, dict[str, float]],
    key: str,
    margin: float,
    reasons: list[str],
    what: str,
    previous: str | None = None,
) -> str:
    """The fastest timed device, unless the incumbent (the previous choice, else the CPU) is
    within `margin` of it. Reasons hold no timings: out/hardware.json must not change between runs."""
    timed = {d: t[key] for d, t in timings.items() if d in usable and key in t}
    if not timed:
        reasons.append(f"{what}: cpu (nothing timed)")
        return "cpu"
    best = min(timed, key=timed.get)
    incumbent = previous if previous in timed else ("cpu" if "cpu" in timed else None)
    if incumbent is not None and best != incumbent and timed[incumbent] < timed[best] * margin:
        why = "the previous choice" if incumbent == previous else "the default"
        reasons.append(f"{what}: {incumbent} kept ({why}) over {best}, which was less than {margin}x faster")
        return incumbent
    others = sorted(d for d in timed if d != best)
    reasons.append(f"{what}: {best}, fastest of the timed devices" + (f" (vs {', '.join(others)})" if others else ""))
    return best


def _default_batched_envs(device: str, limit_mb: float | None, bytes_per_env: float) -> int:
    """Envs for the twin backend: a CPU sweet spot, or the power of two whose memory fits a
    quarter of the VRAM limit (the rest is for the network, minibatches and the allocator)."""
    if device == "cpu" or limit_mb is None:
        return CPU_BATCHED_ENVS
    n = int(limit_mb * MB * 0.25 / bytes_per_env)
    return int(min(65536, max(1024, 2 ** int(math.log2(max(n, 1))))))
