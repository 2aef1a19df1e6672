"""The evaluate stage's body (stages/evaluate.py): the deterministic policy on held-out targets in
the physics engine of `env.physics` at accurate physics; ad-hoc runs write under out/adhoc/."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rlcore.config.schema import Params
from rlcore.envs.engines import LABELS, engine_of
from rlcore.envs.targets import TargetCacheError
from rlcore.evaluation.plots import distance_cdf
from rlcore.pipeline import train as runs
from rlcore.pipeline.cli import StageCommand, StageError, positive_int, workspace
from rlcore.pipeline.evaluate import (
    describe,
    evaluate,
    load_checked_policy,
    placeholder_gif,
    render_gif,
    write_episodes,
)
from rlcore.runtime import files
from rlcore.tracking import runs as tracking

OUTPUT_MB = 50  # eval.json, the episodes CSV, the CDF and the GIF, with room to spare


def evaluate_stage(args: argparse.Namespace, params: Params) -> None:
    """The `evaluate` stage with its parsed command line (stages/evaluate.py)."""
    root = workspace()
    model_path = Path(args.model) if args.model else root / "models" / "policy.pt"
    policy, bundle = load_checked_policy(model_path, params)
    try:
        targets = runs.load_targets(params, root)
    except TargetCacheError as err:
        raise StageError(str(err)) from None
    episodes = args.episodes if args.episodes is not None else params.eval.episodes
    if args.gui and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        # PyBullet's GUI exits the process when it cannot reach an X server (MuJoCo's viewer fails): check first
        raise StageError("--gui needs a display (DISPLAY is not set); run without --gui for the GIF")
    # --model/--episodes/--gui are ad-hoc runs: they write under out/adhoc/ and leave the
    # pipeline's outputs and its MLflow run alone
    adhoc = bool(args.model or args.episodes is not None or args.gui)
    base = "out/adhoc" if adhoc else "out"
    if adhoc:
        print("evaluate: an ad-hoc run (--model/--episodes/--gui): outputs under out/adhoc/, nothing logged to MLflow")
    args.out = args.out or f"{base}/eval.json"
    args.episodes_csv = args.episodes_csv or f"{base}/eval_episodes.csv"
    args.gif = args.gif or f"{base}/eval.gif"
    args.cdf = args.cdf or f"{base}/eval_cdf.png"
    out = root / args.out
    outputs = [out, root / args.episodes_csv, root / args.gif, root / args.cdf]
    files.check_writable(outputs)
    files.check_free_space(out.parent, OUTPUT_MB)
    train_json = root / "out" / "train.json"
    run_id = json.loads(train_json.read_text()).get("run_id") if not adhoc and train_json.is_file() else None
    if run_id:
        tracking.check_run(run_id)  # a store that cannot take the results stops before the work
    reference = params.eval.reference == "dls"
    metrics, rows = evaluate(
        policy, params, targets, episodes, params.eval.seed, progress=True, gui=args.gui, reference=reference
    )
    files.write_json(out, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
    episodes_csv = root / args.episodes_csv
    write_episodes(episodes_csv, rows)
    cdf = distance_cdf(
        rows, params.eval.radii, root / args.cdf, f"Held-out final distance ({LABELS[engine_of(params)]})"
    )
    gif = root / args.gif
    if params.eval.gif_episodes > 0:
        frames = render_gif(policy, params, targets, gif, params.eval.gif_episodes, params.eval.seed)
        print(f"wrote {args.gif} ({frames} frames)")
    else:
        placeholder_gif(gif, "no episodes rendered (eval.gif_episodes: 0)")
    engine = LABELS[engine_of(params)]
    print(f"evaluate ({bundle['algo']} policy, {metrics['episodes']} held-out episodes, {engine} accurate physics):")
    print(f"  wrote {args.out}, {args.episodes_csv}, {args.cdf}")
    for line in describe(metrics):
        print(f"  {line}")
    if run_id:
        logged = {
            (key if key.startswith("eval") else f"eval_{key}"): float(value)
            for key, value in metrics.items()
            if isinstance(value, (int, float))
        }
        logged_files = [(out, "eval"), (episodes_csv, "eval"), (cdf, "eval")] + (
            [(gif, "eval")] if params.eval.gif_episodes > 0 else []
        )
        logged |= tracking.view_metrics(logged)
        tracking.log_results(run_id, logged, logged_files, {"evaluated": "true"}, "logging the evaluation")
        names = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("reference_")]
        table = {
            "metric": names,
            "policy": [float(metrics[k]) for k in names],
            "reference": [metrics.get(f"reference_{k}") for k in names],
        }
        tracking.log_table(run_id, table, "eval/metrics_table.json", "logging the evaluation table")
        print(f"logged into MLflow run {run_id}; runs table: {tracking.runs_url()}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="policy file (default models/policy.pt)")
    parser.add_argument(
        "--episodes",
        type=positive_int,
        default=None,
        help="an ad-hoc evaluation of N episodes: written under out/adhoc/, not logged to MLflow "
        "(--set eval.episodes=N is a pipeline run: out/eval.json and MLflow)",
    )
    parser.add_argument("--gui", action="store_true", help="show a live PyBullet or MuJoCo window")
    parser.add_argument("--out", default=None, help="default out/eval.json (out/adhoc/ for ad-hoc runs)")
    parser.add_argument("--episodes-csv", default=None, help="default out/eval_episodes.csv (one row per episode)")
    parser.add_argument("--gif", default=None, help="default out/eval.gif")
    parser.add_argument("--cdf", default=None, help="default out/eval_cdf.png (final-distance CDF)")


COMMAND = StageCommand(
    "evaluate",
    evaluate_stage,
    options,
    "evaluate",
)
