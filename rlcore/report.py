"""The report stage's content: measurements from rlcore.bench, figures, and report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlcore import bench  # noqa: E402
from rlcore.config import Params  # noqa: E402


def measure(params: Params, devices: list[str]) -> dict[str, Any]:
    r = params.report
    return {
        "env": bench.env_table(params, r.vec_n_envs, r.env_steps),
        "batched": bench.batched_table(params, devices, r.batched_n_envs),
        "update": bench.update_table(params, devices, 256),
        "ppo": bench.compare_ppo(params, r.ppo_n_envs, r.ppo_steps, r.rounds),
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def figures(results: dict[str, Any], curve: Path, episodes: Path, out_dir: Path) -> list[str]:
    """PNG figures; returns their file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for kind in ("dummy", "subproc"):
        rows = [r for r in results["env"] if r["kind"] == kind]
        ax.plot([r["n_envs"] for r in rows], [r["fps"] for r in rows], marker="o", label=f"SB3 {kind}")
    single = next(r["fps"] for r in results["env"] if r["kind"] == "single")
    ax.axhline(single, color="gray", ls="--", label="single env")
    ax.set(xlabel="n_envs", ylabel="env steps/s", title="PyBullet env throughput", xscale="log", xticks=[1, 2, 4, 8])
    ax.legend()
    names.append(_save(fig, out_dir, "env_throughput.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for device in sorted({r["device"] for r in results["batched"]}):
        rows = [r for r in results["batched"] if r["device"] == device]
        ax.plot([r["n_envs"] for r in rows], [r["fps"] for r in rows], marker="o", label=device)
    ax.set(xlabel="n_envs", ylabel="env steps/s", title="Batched twin throughput", xscale="log", yscale="log")
    ax.legend()
    names.append(_save(fig, out_dir, "batched_throughput.png"))

    ppo = results["ppo"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    axes[0].bar(["rlcore", f"SB3 ({ppo['sb3_vec_env']})"], [ppo["fps_rlcore"], ppo["fps_sb3"]], color=["C0", "C1"])
    axes[0].set(ylabel="steps/s", title=f"PPO end to end ({ppo['ratio_rlcore_vs_sb3']:.2f}x)")
    split = ppo["time_split_per_step"]
    axes[1].bar(
        ["env", "inference", "update"], [split["env_s"] * 1e3, split["inference_s"] * 1e3, split["update_s"] * 1e3]
    )
    axes[1].set(ylabel="ms per rollout step", title="Where rlcore's time goes")
    names.append(_save(fig, out_dir, "ppo_comparison.png"))

    rows = _read_csv(curve)
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        steps = [float(r["step"]) for r in rows]
        ax.plot(
            steps,
            [float(r["success_rate"]) if r["success_rate"] not in ("", "nan") else float("nan") for r in rows],
            label="success rate",
        )
        ax.plot(steps, [float(r["curriculum_level"]) / 2 for r in rows], ls="--", label="curriculum level / 2")
        ax.set(xlabel="env steps", ylabel="", title="Training", ylim=(0, 1.05))
        ax.legend()
        names.append(_save(fig, out_dir, "training_curve.png"))

    rows = _read_csv(episodes)
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        dist = [float(r["final_distance_mm"]) for r in rows]
        ax.hist(dist, bins=40, range=(0, max(60.0, min(max(dist), 300.0))))
        ax.axvline(20, color="red", ls="--", label="2 cm")
        ax.set(xlabel="final distance (mm)", ylabel="episodes", title="Held-out evaluation (PyBullet)")
        ax.legend()
        names.append(_save(fig, out_dir, "eval_distances.png"))
    return names


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def markdown(
    results: dict[str, Any],
    train: dict[str, Any],
    evaluation: dict[str, Any],
    images: list[str],
    hardware: dict[str, Any],
) -> str:
    ppo, split = results["ppo"], results["ppo"]["time_split_per_step"]
    lines = ["# rlcore report", ""]
    if train:
        lines += [
            "## This run",
            "",
            "| | |",
            "|---|---|",
            f"| MLflow run | `{train.get('run_id')}` |",
            f"| algo / backend / device | {train.get('algo')} / {train.get('backend')} / {train.get('device')} |",
            f"| training | {train.get('steps'):,} steps in {train.get('wall_s')} s ({train.get('fps'):,} steps/s) |",
        ]
        if evaluation:
            lines += [
                "| held-out success (2 cm / 5 cm) | "
                f"{evaluation['success_rate']:.1%} / {evaluation['success_rate_5cm']:.1%} |",
                "| final distance median / p90 | "
                f"{evaluation['final_distance_mm_median']:.1f} / {evaluation['final_distance_mm_p90']:.1f} mm |",
            ]
        lines.append("")
    lines += [
        "## Headline: rlcore PPO vs stable-baselines3 PPO",
        "",
        f"Same PyBullet env ({ppo['n_envs']} envs, training physics) and hyperparameters, "
        f"{ppo['steps_per_run']} steps per run, {ppo['rounds']} alternating rounds (median).",
        "",
        "| | steps/s |",
        "|---|---|",
        f"| rlcore PPO ({ppo['rlcore_vec_env']} vec env, chunked) | {ppo['fps_rlcore']:,.0f} |",
        f"| SB3 PPO ({ppo['sb3_vec_env']}, its faster vec env here) | {ppo['fps_sb3']:,.0f} |",
        f"| **ratio** | **{ppo['ratio_rlcore_vs_sb3']:.2f}x** |",
        "",
        f"rlcore per rollout step: env {split['env_s'] * 1e3:.2f} ms, inference {split['inference_s'] * 1e3:.2f} ms, "
        f"update (per step) {split['update_s'] * 1e3:.2f} ms.",
        "",
    ]
    lines += ["## Which device is faster for what", ""]
    best_env = max(results["batched"], key=lambda r: r["fps"])
    best_upd = max(results["update"], key=lambda r: r["samples_per_s"])
    lines += [
        f"- PPO update: **{best_upd['device']}** is fastest here "
        f"({best_upd['samples_per_s']:,.0f} samples/s at minibatch {best_upd['minibatch']}).",
        f"- Batched env: **{best_env['device']}** is fastest here "
        f"({best_env['fps']:,.0f} env steps/s at {best_env['n_envs']} envs).",
        f"- The hardware stage chose policy on **{hardware.get('policy_device', '?')}**, batched env on "
        f"**{hardware.get('env_device', '?')}**.",
        "",
    ]
    lines += ["## PyBullet env throughput", "", "| vec env | n_envs | steps/s |", "|---|---|---|"]
    lines += [f"| {r['kind']} | {r['n_envs']} | {r['fps']:,.0f} |" for r in results["env"]]
    lines += ["", "## Batched twin", "", "| device | n_envs | env steps/s | KB per env |", "|---|---|---|---|"]
    for r in results["batched"]:
        kb = "n/a" if r["memory_per_env_kb"] is None else f"{r['memory_per_env_kb']:.2f}"
        lines.append(f"| {r['device']} | {r['n_envs']} | {r['fps']:,.0f} | {kb} |")
    lines += ["", "## PPO update throughput", "", "| device | minibatch | samples/s |", "|---|---|---|"]
    lines += [f"| {r['device']} | {r['minibatch']} | {r['samples_per_s']:,.0f} |" for r in results["update"]]
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def bench_metrics(results: dict[str, Any]) -> dict[str, float]:
    """out/bench.json: the DVC metrics."""
    ppo = results["ppo"]
    single = next(r["fps"] for r in results["env"] if r["kind"] == "single")
    best_batched = max(results["batched"], key=lambda r: r["fps"])
    return {
        "fps_rlcore": round(ppo["fps_rlcore"], 1),
        "fps_sb3": round(ppo["fps_sb3"], 1),
        "ratio_rlcore_vs_sb3": round(ppo["ratio_rlcore_vs_sb3"], 3),
        "fps_single_env": round(single, 1),
        "fps_batched_best": round(best_batched["fps"], 1),
        "batched_best_n_envs": best_batched["n_envs"],
    }


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
