"""`python -m rlcore.bench gpu`: every figure a GPU machine should give, in one command, with the
CPU measured beside it in the same run.

On every usable device (CUDA, ROCm, MPS, DirectML, and the CPU):
- the twin's env steps/s and end-to-end PPO steps/s at each size (default 4096, 16384, 65536,
  262144 envs), alternating devices in rounds;
- the memory model's estimate against the measured peak at each size (where the device can tell);
- the wall time to the target held-out success (twin at accurate physics), training at the n_envs
  the hardware stage would give that device;
- the hardware stage's decision.
A size whose estimate exceeds the device's memory (a GPU's VRAM limit, the host's memory for the
CPU) is skipped with the reason. Needs no PyBullet: it reads a data/targets.npz built elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rlcore.bench.rounds import MIN_ROUNDS
from rlcore.bench.tables import batched_ppo_table, batched_table
from rlcore.config.schema import Params
from rlcore.pipeline import placement
from rlcore.robots.chain import chain_of
from rlcore.runtime import probes as hw
from rlcore.runtime.devices import PeakMemory, torch_device
from rlcore.runtime.memory import bytes_per_env, estimate_memory
from rlcore.runtime.oscompat import host_memory_mb

SIZES = [4096, 16384, 65536, 262144]


def with_envs(params: Params, n_envs: int) -> Params:
    return params.model_copy(update={"train": params.train.model_copy(update={"n_envs": n_envs})})


def memory_limit(probe: hw.Probe, params: Params) -> tuple[float | None, str]:
    """The memory a size must fit: a GPU's VRAM limit, the host's memory for the CPU."""
    if probe.device == "cpu":
        return host_memory_mb(), "host memory"
    return placement.vram_limit(probe, params.hardware), "VRAM limit"


def skip_reason(probe: hw.Probe, params: Params, n_envs: int) -> str | None:
    """Why a size is not run on a device (its estimate exceeds the memory), or None."""
    estimate = estimate_memory(params.train, chain_of(params.robot), n_envs).total_mb
    limit, what = memory_limit(probe, params)
    if limit is not None and estimate > limit:
        return f"estimate {estimate:,.0f} MB exceeds the {what} {limit:,.0f} MB"
    return None


def measured_peak(params: Params, device: torch.device, n_envs: int) -> float | None:
    """Peak device memory (MB) over two PPO iterations at n_envs (None where the device cannot tell)."""
    from rlcore.algos.ppo.trainer import Trainer
    from rlcore.envs.batched import BatchedReachEnv

    sized = with_envs(params, n_envs)
    with PeakMemory(device) as peak:
        env = BatchedReachEnv(sized.env, sized.robot, None, n_envs, device)
        trainer = Trainer(sized, env, device, hw.capabilities(device), None, 1)
        trainer.train(progress=False, total_steps=2 * sized.train.n_steps * n_envs)
    del trainer, env
    return peak.peak_mb


def time_to_target(
    params: Params, targets: Any, device: torch.device, n_envs: int, target: float, budget: int, score_every: int
) -> dict[str, Any]:
    """Train on `device` until the twin's held-out success (every held-out target, accurate
    physics) reaches `target`, or `budget` steps; the wall time excludes the scoring."""
    from rlcore.algos.ppo.trainer import Trainer
    from rlcore.envs.batched import BatchedReachEnv
    from rlcore.pipeline.evaluate import evaluate_batched
    from rlcore.policy.file import policy_from_bundle

    sized = with_envs(params, n_envs)
    env = BatchedReachEnv(sized.env, sized.robot, targets, n_envs, device, seed=sized.seed)
    trainer = Trainer(sized, env, device, hw.capabilities(device), None, targets.n_levels)
    state: dict[str, Any] = {"scoring_s": 0.0, "reached": None, "last": None}

    def on_iteration(row: dict[str, Any]) -> None:
        if trainer.iteration % score_every and trainer.global_step < budget:
            return
        train_s = row["wall_s"] - state["scoring_s"]
        start = time.perf_counter()
        policy = policy_from_bundle(trainer.policy(), device)
        rate = evaluate_batched(policy, sized, targets, None, seed=sized.eval.seed, device=str(device))["success_rate"]
        state["scoring_s"] += time.perf_counter() - start
        state["last"] = {"step": trainer.global_step, "train_s": train_s, "heldout_twin": rate}
        if rate >= target:
            state["reached"] = state["last"]
            trainer.stop_requested = True

    try:
        trainer.train(on_iteration, progress=False, total_steps=budget)
    except KeyboardInterrupt:  # stop_requested: the target was reached
        pass
    reached = state["reached"]
    return {
        "n_envs": n_envs,
        "target": target,
        "reached": reached is not None,
        "time_to_target_s": None if reached is None else reached["train_s"],
        "steps_to_target": None if reached is None else reached["step"],
        "last_score": state["last"],
    }


def run(
    params: Params,
    targets: Any,
    sizes: list[int],
    rounds: int = MIN_ROUNDS,
    budget: int = 20_000_000,
    target: float = 0.95,
    score_every: int = 10,
) -> dict[str, Any]:
    """Every figure of the command, as one JSON-ready dict."""
    probes = hw.probe_all()
    usable = [p for p in probes if p.usable]
    sizes_out: list[dict[str, Any]] = []
    for n in sizes:
        reasons = {p.device: skip_reason(p, params, n) for p in usable}
        fit = [p for p in usable if reasons[p.device] is None]
        sizes_out += [{"device": d, "n_envs": n, "skipped": why} for d, why in reasons.items() if why is not None]
        if not fit:
            continue
        devices = [p.device for p in fit]
        env_rows = {r["device"]: r for r in batched_table(params, devices, [n], rounds=rounds)["rows"]}
        ppo_table = batched_ppo_table(params, devices, [n], iterations=4, rounds=rounds)
        ppo_rows = {r["device"]: r for r in ppo_table["rows"]}
        for p in fit:
            device = torch_device(p.device)
            sizes_out.append(
                {
                    "device": p.device,
                    "n_envs": n,
                    "env_steps_per_s": env_rows[p.device]["fps"],
                    "env_spread": env_rows[p.device]["spread"].spread,
                    "ppo_steps_per_s": ppo_rows[p.device]["ppo_fps"],
                    "ppo_spread": ppo_rows[p.device]["spread"].spread,
                    "estimate_mb": estimate_memory(params.train, chain_of(params.robot), n).total_mb,
                    "measured_peak_mb": measured_peak(params, device, n),
                }
            )
    to_target = {}
    per_env = bytes_per_env(params.train, chain_of(params.robot))
    for p in usable:
        n = params.train.n_envs or placement.batched_envs_for(p, params.hardware, per_env)
        device = torch_device(p.device)
        to_target[p.device] = time_to_target(params, targets, device, n, target, budget, score_every)
    timings = placement.measure_devices(params, probes)
    decision = placement.choose_placement(probes, timings, params.hardware, per_env)
    return {
        "torch": torch.__version__,
        "devices": [p.stable_dict() for p in probes],
        "rounds": rounds,
        "sizes": sizes_out,
        "time_to_target": to_target,
        "decision": decision.to_dict(),
    }


def lines(result: dict[str, Any]) -> list[str]:
    """The result as printed lines."""
    out = [f"torch {result['torch']}; medians of {result['rounds']} alternating rounds"]
    out.append(f"{'device':<10} {'n_envs':>8} {'env steps/s':>13} {'PPO steps/s':>12} {'est. MB':>9} {'peak MB':>9}")
    for r in result["sizes"]:
        if r.get("skipped"):
            out.append(f"{r['device']:<10} {r['n_envs']:>8}  skipped: {r['skipped']}")
            continue
        peak = "n/a" if r["measured_peak_mb"] is None else f"{r['measured_peak_mb']:,.0f}"
        out.append(
            f"{r['device']:<10} {r['n_envs']:>8} {r['env_steps_per_s']:>13,.0f} {r['ppo_steps_per_s']:>12,.0f} "
            f"{r['estimate_mb']:>9,.0f} {peak:>9}"
        )
    for device, t in result["time_to_target"].items():
        when = "not reached" if not t["reached"] else f"{t['time_to_target_s']:.0f} s ({t['steps_to_target']:,} steps)"
        out.append(f"time to {t['target']:.0%} held-out on {device} ({t['n_envs']} envs): {when}")
    d = result["decision"]
    out.append(f"hardware decision: policy on {d['policy_device']}, batched env on {d['env_device']}")
    return out
