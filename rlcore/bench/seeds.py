"""`python -m rlcore.bench seeds --seeds N`: one configuration trained over N seeds, as a result.

Each seed trains with the train stage's own code (rlcore.pipeline.train). Every `--score-every` updates the
current policy is scored on every held-out target in the batched twin at accurate physics (which
agrees with PyBullet within a point); the first score at or above `--target` gives the seed's
training time to that level, scoring time excluded. A seed that never gets there is "not
reached". At the end each seed is evaluated as the evaluate stage does (PyBullet, accurate
physics, `eval.episodes` held-out targets), with its 95% Wilson interval.

MLflow: one parent run per configuration (`seeds-<label>`) with the summary, one nested run per
seed with its training curve, its twin scores and its held-out figures. With `--set-b KEY=VALUE`
a second configuration runs the same seeds, and the command says whether the two configurations'
held-out intervals overlap.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlcore.bench.seed_report import comparison_text, rate_keys, summary_text, write_summary
from rlcore.config.schema import ConfigError, Params
from rlcore.pipeline import train as runs
from rlcore.pipeline.params import load_params
from rlcore.pipeline.placement import Placement
from rlcore.stats import seed_summary, wilson_interval
from rlcore.tracking import runs as tracking


@dataclass
class SeedResult:
    """One seed's figures."""

    seed: int
    run_id: str
    heldout: dict[str, Any]  # evaluate()'s summary: success_rate, its interval, distances ...
    evaluated_in: str  # "pybullet" or "mujoco" (the evaluate stage's figure) or "twin" (no engine here)
    train_s: float  # training time, scoring excluded
    time_to_target_s: float | None  # None: not reached
    steps_to_target: int | None
    curve: list[dict[str, float]] = field(default_factory=list)  # step, train_s, twin score


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `seeds` options of `python -m rlcore.bench`."""
    from rlcore.pipeline.cli import positive_float, positive_int

    group = parser.add_argument_group("seeds")
    group.add_argument(
        "--seeds", type=positive_int, default=None, help="training seeds per configuration (seeds: 3, algos: 1)"
    )
    group.add_argument(
        "--set-b",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a second configuration: the params with these overrides too (repeatable)",
    )
    group.add_argument("--score-every", type=positive_int, default=20, help="updates between twin scores (20)")
    group.add_argument("--target", type=positive_float, default=0.95, help="held-out success to time (0.95)")
    group.add_argument(
        "--radius",
        type=positive_float,
        default=None,
        help="m: time success within this radius (0.005: the precision objective); default env.success_radius",
    )
    group.add_argument("--out-dir", default="out/seeds", help="summary JSON and figure (out/seeds)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_command(args: argparse.Namespace, params: Params) -> None:
    """The `seeds` command: one or two configurations, their summaries, and the comparison."""
    root = Path.cwd()
    configs = [("a" if args.set_b else "base", params, list(args.overrides))]
    if args.set_b:
        try:
            params_b = load_params(args.params, [*args.overrides, *args.set_b])
        except ConfigError as err:
            raise SystemExit(f"error: --set-b: {err}") from None
        configs.append(("b", params_b, [*args.overrides, *args.set_b]))
    try:
        decision, _ = runs.honour_explicit_device(params, runs.read_hardware(root / "out" / "hardware.json"))
        targets = runs.load_targets(params, root)
    except Exception as err:  # SetupError, TargetCacheError: say what to run
        raise SystemExit(f"error: {err}") from None
    summaries = []
    for label, config, overrides in configs:
        summary = run_config(
            config,
            targets,
            decision,
            label,
            overrides,
            args.seeds or 3,
            args.score_every,
            args.target,
            not args.no_progress,
            args.radius,
        )
        write_summary(summary, root / args.out_dir)
        for line in summary_text(summary):
            print(line)
        summaries.append(summary)
    if len(summaries) == 2:
        print(comparison_text(*summaries))
    print(f"runs table (after `mlflow ui` at the repo root): {tracking.runs_url()}")


def run_config(
    params: Params,
    targets: Any,
    decision: Placement,
    label: str,
    overrides: list[str],
    n_seeds: int,
    score_every: int,
    target: float,
    progress: bool = True,
    radius: float | None = None,
) -> dict[str, Any]:
    """Train `n_seeds` seeds of one configuration under an MLflow parent run; returns the summary.
    The first seed's evaluation also runs the reference controller (eval.reference) on the same
    episodes: its figures do not depend on the training seed."""
    client = tracking.client()
    parent = tracking.open_run(
        None, params, "seeds", decision.policy_device, extra_params={"seeds.n": n_seeds, "seeds.label": label}
    )
    client.set_tag(parent, "mlflow.runName", f"seeds-{label}")
    client.set_tag(parent, "seeds.overrides", " ".join(overrides) or "(params.yaml as it is)")
    results = []
    try:
        for s in range(n_seeds):
            seed_params = params.model_copy(update={"seed": params.seed + s})
            print(f"seeds [{label}]: seed {seed_params.seed} ({s + 1}/{n_seeds})")
            reference = s == 0 and params.eval.reference == "dls"
            results.append(
                train_seed(
                    seed_params, targets, decision, parent, label, score_every, target, progress, radius, reference
                )
            )
    except BaseException:
        tracking.end_run(parent, "KILLED")
        raise
    summary = summarise(results, label, overrides, target, params, radius)
    metrics = {f"heldout_{k}": v for k, v in summary["heldout"].items() if v is not None}
    metrics.update({k: v for k, v in summary["reference"].items() if isinstance(v, (int, float))})
    metrics["seeds_reached_target"] = summary["reached"]
    if summary["time_to_target_s"]["mean"] is not None:
        metrics.update({f"time_to_target_s_{k}": v for k, v in summary["time_to_target_s"].items()})
    tracking.log_results(parent, metrics, [], {"seeds.target": str(target)}, "logging the seeds summary")
    summary["parent_run_id"] = parent
    tracking.end_run(parent)
    return summary


def train_seed(
    params: Params,
    targets: Any,
    decision: Placement,
    parent: str,
    label: str,
    score_every: int,
    target: float,
    progress: bool,
    radius: float | None = None,
    reference: bool = False,
) -> SeedResult:
    """Train one seed (nested MLflow run), scoring it in the twin as it goes (success within
    `radius`, default env.success_radius); then evaluate it (with the reference controller)."""
    from rlcore.pipeline.evaluate import evaluate_batched, objective_key
    from rlcore.policy.file import policy_from_bundle

    params, res = runs.resolve(params, decision)
    client = tracking.client()
    run_id = tracking.open_run(None, params, "seeds", res.policy_device, parent_run_id=parent)
    client.set_tag(run_id, "mlflow.runName", f"seeds-{label}-seed{params.seed}")
    sender = tracking.MetricSender(client, run_id)
    state: dict[str, Any] = {"scoring_s": 0.0, "reached": None, "curve": []}

    def score(trainer: Any, row: dict[str, Any]) -> None:
        train_s = row["wall_s"] - state["scoring_s"]  # the clock read before this update's scoring
        start = time.perf_counter()
        policy = policy_from_bundle(trainer.policy(), res.env_device)
        rate = evaluate_batched(policy, params, targets, None, params.eval.seed, res.env_device, radius)
        state["scoring_s"] += time.perf_counter() - start
        score = rate[objective_key(radius)]
        point = {"step": row["step"], "train_s": train_s, "twin_success_rate": score}
        state["curve"].append(point)
        sender.add({"heldout_twin_success_rate": score, "train_s": train_s}, int(row["step"]))
        if state["reached"] is None and score >= target:
            state["reached"] = point

    def on_start(trainer: Any, note: str | None) -> None:
        state["trainer"] = trainer

    def on_iteration(row: dict[str, Any]) -> None:
        sender.add(row, int(row["step"]))
        trainer = state["trainer"]
        if trainer.iteration % score_every == 0 or trainer.global_step >= params.train.total_steps:
            score(trainer, row)

    try:
        summary, bundle = runs.train(params, res, targets, None, on_start, on_iteration, progress=progress)
    except BaseException:
        sender.close()
        tracking.end_run(run_id, "KILLED")
        raise
    sender.close()
    policy = policy_from_bundle(bundle, "cpu")
    try:
        from rlcore.envs.engines import engine_of
        from rlcore.pipeline.evaluate import evaluate

        where = engine_of(params)
        heldout, _ = evaluate(
            policy, params, targets, params.eval.episodes, params.eval.seed, progress=progress, reference=reference
        )
    except (ImportError, ConfigError):  # no physics engine here (a GPU box): the twin's figure, said so
        heldout, where = evaluate_batched(policy, params, targets, None, seed=params.eval.seed), "twin"
    reached = state["reached"]
    result = SeedResult(
        seed=params.seed,
        run_id=run_id,
        heldout=heldout,
        evaluated_in=where,
        train_s=summary["wall_s"] - state["scoring_s"],
        time_to_target_s=None if reached is None else reached["train_s"],
        steps_to_target=None if reached is None else int(reached["step"]),
        curve=state["curve"],
    )
    metrics = {
        f"heldout_{k}": v
        for k, v in heldout.items()
        if k.startswith(("success", "within", "final_distance")) and isinstance(v, (int, float))
    }
    metrics["train_s"] = result.train_s
    if reached is not None:
        metrics.update(time_to_target_s=result.time_to_target_s, steps_to_target=float(result.steps_to_target))
    tags = {"time_to_target": "not reached" if reached is None else f"{result.time_to_target_s:.1f} s"}
    tracking.log_results(run_id, metrics, [], tags, "logging the seed's results")
    tracking.end_run(run_id)
    return result


def summarise(
    results: list[SeedResult],
    label: str,
    overrides: list[str],
    target: float,
    params: Params,
    radius: float | None = None,
) -> dict:
    """Mean, min and max over seeds of every rate, with its pooled interval; final-distance
    percentiles; time to the target where reached; the reference controller's figures."""
    heldout: dict[str, Any] = {}
    episodes = sum(r.heldout["episodes"] for r in results)
    for key in rate_keys(results[0].heldout):
        rates = [r.heldout[key] for r in results]
        successes = sum(round(r.heldout[key] * r.heldout["episodes"]) for r in results)
        pooled = wilson_interval(successes, episodes)
        heldout.update({f"{key}_{k}": v for k, v in seed_summary(rates).items()})
        heldout.update({f"{key}_pooled_ci_low": pooled[0], f"{key}_pooled_ci_high": pooled[1]})
    for key in ("final_distance_mm_median", "final_distance_mm_p90", "final_distance_mm_p99"):
        if key in results[0].heldout:
            heldout.update({f"{key}_{k}": v for k, v in seed_summary([r.heldout[key] for r in results]).items()})
    times = [r.time_to_target_s for r in results if r.time_to_target_s is not None]
    return {
        "label": label,
        "overrides": overrides,
        "target": target,
        "objective": "success_rate" if radius is None else f"within {radius * 1000:g} mm",
        "total_steps": params.train.total_steps,
        "evaluated_in": results[0].evaluated_in,
        "heldout": heldout,
        "reference": {k: v for k, v in results[0].heldout.items() if k.startswith("reference_")},
        "reached": len(times),
        "time_to_target_s": seed_summary(times) if times else {"mean": None, "min": None, "max": None},
        "seeds": [asdict(r) for r in results],
    }
