"""`python -m rlcore.bench algos`: rlcore PPO, SB3 PPO, SB3 SAC and SB3 DQN on the same PyBullet
env, the same minutes each on this machine, and rlcore PPO on the batched twin as a row of its
own. Each run is the train stage's code (`rlcore.pipeline.train.train`) at params.yaml's settings for its
algorithm; its policy is copied on a time grid and on a step grid while it trains, and every copy
is scored afterwards (held-out targets, the twin at accurate physics), so scoring takes none of
the training time. Writes out/algos/algos.json and out/algos/algos.png (success against wall time
and against env steps, one line per algorithm).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCache
from rlcore.pipeline import train as runs
from rlcore.pipeline.params import apply_overrides, validate
from rlcore.pipeline.placement import Placement
from rlcore.runtime import files
from rlcore.stats import wilson_interval

ROWS: dict[str, list[str]] = {
    "rlcore PPO": ["env.backend=physics", "train.algo=rlcore"],
    "SB3 PPO": ["env.backend=physics", "train.algo=sb3"],
    "SB3 SAC": ["env.backend=physics", "train.algo=sb3_sac"],
    "SB3 DQN": ["env.backend=physics", "train.algo=sb3_dqn"],
    "rlcore PPO, twin": ["env.backend=twin", "train.algo=rlcore"],
}
LOG_EVERY_STEPS = 1000
# DQN's epsilon falls over exploration_fraction of total_steps; with no step limit here, of this
# many steps: the budget of the sweep that chose the default fraction (docs/benchmarks.md)
EXPLORATION_BASE_STEPS = 60_000
TIME_POINTS = 10  # copies on the time grid per run
STEP_GROWTH = 1.5  # and one each time the step count grows by this factor


def row_params(params: Params, label: str, seed: int) -> Params:
    """params.yaml's settings with one row's backend and algorithm, and no step limit."""
    sets = [*ROWS[label], f"seed={params.seed + seed}", f"train.total_steps={1 << 40}"]
    # off-policy runs report (and can stop) once per train.log_every_steps: at most 1,000 here
    sets.append(f"train.log_every_steps={min(params.train.log_every_steps, LOG_EVERY_STEPS)}")
    dqn = params.train.dqn
    if label == "SB3 DQN" and dqn.exploration_steps is None:  # no step limit: epsilon's fall in steps
        sets.append(f"train.dqn.exploration_steps={round(dqn.exploration_fraction * EXPLORATION_BASE_STEPS)}")
    return validate(apply_overrides(params.model_dump(), sets), source=f"bench algos, {label}")


def train_for(params: Params, decision: Placement, targets: TargetCache, seconds: float) -> dict[str, Any]:
    """Train for `seconds` of training time; returns the copies [(train_s, step, bundle)] and steps/s."""
    _, res = runs.resolve(params, decision)
    runs.cpu_threads(params)
    run: dict[str, Any] = {}
    copies: list[tuple[float, int, dict]] = []
    grid = {"time": seconds / TIME_POINTS, "step": 0.0}
    paused = 0.0

    def on_start(trainer: Any, note: str | None) -> None:
        run["trainer"] = trainer

    def on_iteration(row: dict[str, Any]) -> None:
        nonlocal paused
        train_s = row["wall_s"] - paused
        if run["trainer"].finish_requested:
            return  # a row flushed after the limit (SB3's last rollout): the copy at the limit stands
        if train_s >= grid["time"] or row["step"] >= grid["step"] or train_s >= seconds:
            start = time.perf_counter()
            copies.append((train_s, int(row["step"]), run["trainer"].policy()))
            paused += time.perf_counter() - start
            while grid["time"] <= train_s:
                grid["time"] += seconds / TIME_POINTS
            grid["step"] = max(grid["step"], row["step"]) * STEP_GROWTH
        if train_s >= seconds:
            run["trainer"].finish_requested = True

    summary, _ = runs.train(params, res, targets, None, on_start, on_iteration, progress=False)
    return {"copies": copies, "fps": summary["fps"], "n_envs": res.n_envs}


def score(params: Params, targets: TargetCache, bundle: dict, episodes: int, seed: int) -> float:
    """Held-out success of a policy copy in the twin at accurate physics."""
    from rlcore.pipeline.evaluate import evaluate_batched
    from rlcore.policy.file import policy_from_bundle

    metrics = evaluate_batched(policy_from_bundle(bundle, "cpu"), params, targets, episodes, seed=seed)
    return float(metrics["success_rate"])


def run(
    params: Params,
    targets: TargetCache,
    decision: Placement,
    minutes: float,
    seeds: int = 1,
    episodes: int = 1000,
    labels: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every row for `minutes` of training per seed, then every copy scored."""
    labels = labels or list(ROWS)
    results: dict[str, Any] = {"minutes": minutes, "seeds": seeds, "episodes": episodes, "rows": {}}
    for label in labels:
        runs_out = []
        for s in range(seeds):
            p = row_params(params, label, s)
            if progress:
                print(f"bench algos: {label}, seed {p.seed}, {minutes:g} min", flush=True)
            trained = train_for(p, decision, targets, minutes * 60.0)
            curve = [
                {"train_s": t, "step": step, "success": score(p, targets, bundle, episodes, 1000 + s)}
                for t, step, bundle in trained["copies"]
            ]
            runs_out.append({"seed": p.seed, "fps": trained["fps"], "n_envs": trained["n_envs"], "curve": curve})
        results["rows"][label] = runs_out
    results["equal_steps"] = min(r["curve"][-1]["step"] for rs in results["rows"].values() for r in rs)
    results["table"] = table(results)
    return results


def _at_steps(curve: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The last copy at or before `steps` env steps."""
    return [c for c in curve if c["step"] <= steps][-1] if curve[0]["step"] <= steps else curve[0]


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row: steps/s, steps reached, success at equal wall time (the end) with the pooled
    Wilson interval, and success at equal steps (the fewest any row reached)."""
    out = []
    n = results["episodes"]
    for label, seed_runs in results["rows"].items():
        final = [r["curve"][-1]["success"] for r in seed_runs]
        at = [_at_steps(r["curve"], results["equal_steps"]) for r in seed_runs]
        lo, hi = wilson_interval(round(sum(final) * n), n * len(final))
        out.append(
            {
                "algo": label,
                "steps_per_s": sum(r["fps"] for r in seed_runs) / len(seed_runs),
                "steps": sum(r["curve"][-1]["step"] for r in seed_runs) / len(seed_runs),
                "success_at_time": sum(final) / len(final),
                "success_at_time_min": min(final),
                "success_at_time_max": max(final),
                "interval": [lo, hi],
                "success_at_steps": sum(a["success"] for a in at) / len(at),
                "steps_used": min(a["step"] for a in at),
            }
        )
    return out


def text(results: dict[str, Any]) -> list[str]:
    """The table as printed lines."""
    lines = [
        f"Held-out success (twin, accurate physics, {results['episodes']} episodes) after {results['minutes']:g} min "
        f"of training each, {results['seeds']} seed(s); equal steps = {results['equal_steps']:,}",
        f"{'algorithm':<18} {'steps/s':>9} {'steps':>11} {'at equal time':>14} {'95% interval':>15} "
        f"{'at equal steps':>15}",
    ]
    for r in results["table"]:
        spread = "" if results["seeds"] == 1 else f" ({r['success_at_time_min']:.0%}-{r['success_at_time_max']:.0%})"
        lines.append(
            f"{r['algo']:<18} {r['steps_per_s']:>9,.0f} {r['steps']:>11,.0f} {r['success_at_time']:>13.1%}{spread} "
            f"{r['interval'][0]:>7.1%}-{r['interval'][1]:<6.1%} {r['success_at_steps']:>14.1%}"
        )
    return lines


def figure(results: dict[str, Any], path: Path) -> None:
    """Success against training time and against env steps, one colour per algorithm (its first
    seed drawn solid, further seeds faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (by_time, by_steps) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for label, seed_runs in results["rows"].items():
        for ax, key in ((by_time, "train_s"), (by_steps, "step")):
            for i, r in enumerate(seed_runs):
                xs = [c[key] / (60.0 if key == "train_s" else 1.0) for c in r["curve"]]
                ax.plot(xs, [c["success"] for c in r["curve"]], marker=".", alpha=1.0 if i == 0 else 0.4,
                        color=f"C{list(results['rows']).index(label)}", label=label if i == 0 else None)  # fmt: skip
    by_time.set(xlabel="training time (min)", ylabel="held-out success (twin, accurate physics)")
    by_steps.set(xlabel="env steps", xscale="log")
    by_time.set_ylim(0.0, 1.02)
    by_time.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    for ax in (by_time, by_steps):
        ax.grid(alpha=0.3)
    by_time.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{results['minutes']:g} min per algorithm on this machine, {results['seeds']} seed(s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """out_dir/algos.json and out_dir/algos.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(out_dir / "algos.json", results)
    figure(results, out_dir / "algos.png")
    return [out_dir / "algos.json", out_dir / "algos.png"]
