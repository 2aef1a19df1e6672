"""The tune stage's body (stages/tune.py): Optuna workers over `tune.space` under a VRAM limit, on a
shared study, with MLflow parent and trial runs."""

from __future__ import annotations

import argparse
import re

from rlcore.config.schema import Params
from rlcore.envs.targets import TargetCacheError
from rlcore.pipeline import train as runs
from rlcore.pipeline.cli import StageCommand, StageError, positive_float, positive_int, workspace
from rlcore.runtime import files
from rlcore.tracking import runs as tracking
from rlcore.tune.space import check_storage, storage_url

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def tune_stage(args: argparse.Namespace, params: Params) -> None:
    """The `tune` stage with its parsed command line (stages/tune.py)."""
    from rlcore.tune.study import TuneOptions, check_objective, run_worker, summarise

    root = workspace()
    t = params.tune
    if args.study_name is not None and not STUDY_NAME.fullmatch(args.study_name):
        raise StageError(
            f"--study-name {args.study_name!r}: letters, digits, '_', '.' and '-' only (it names out/tune/<name>/)"
        )
    try:
        decision, device_note = runs.honour_explicit_device(params, runs.read_hardware(root / "out" / "hardware.json"))
        runs.load_targets(params, root)
    except (runs.SetupError, TargetCacheError) as err:
        raise StageError(str(err)) from None
    limit = args.vram_limit_mb or t.vram_limit_mb or decision.vram_limit_mb
    storage = storage_url(root, args.storage)
    try:
        check_storage(storage)
    except ValueError as err:
        raise StageError(str(err)) from None
    opts = TuneOptions(
        root=root,
        storage=storage,
        study_name=args.study_name or t.study_name,
        trials=args.trials or t.trials,
        steps_per_trial=args.steps_per_trial or t.steps_per_trial,
        seeds=args.seeds or t.seeds,
        vram_limit_mb=limit,
        objective=args.objective or t.objective,
        budget_s=args.budget_s or t.budget_s,
        probe_s=t.probe_s,
        timeout_s=args.timeout,
        progress=not args.no_progress,
    )
    try:
        check_objective(params, opts)
    except runs.SetupError as err:
        raise StageError(str(err)) from None
    shown = opts.storage.split("@")[-1]  # no password in the log
    each = (
        f"{opts.budget_s:g} s of training (throughput timed for {opts.probe_s:g} s, then as steps)"
        if opts.objective == "success_at_budget"
        else f"{opts.steps_per_trial:,} steps"
    )
    print(
        f"tune: study {opts.study_name!r} on {shown}: {opts.trials} trials in total, {each} x {opts.seeds} "
        f"seed(s) each, VRAM limit {'none' if limit is None else f'{limit:.0f} MB'}"
    )
    if device_note:
        print(f"  - {device_note}")
    study = run_worker(params, opts, decision)
    out_dir = root / "out" / "tune" / opts.study_name
    summary = summarise(study, out_dir, t.space)
    files.write_json(out_dir / "summary.json", summary, default=str)
    print(f"\n{'trial':>5} {'state':<9} {'success':>8}  params / reason")
    for row in summary["trials"]:
        value = f"{row['value']:.3f}" if row["state"] == "COMPLETE" else ""
        detail = row["reason"] or ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items()
        )
        if row.get("steps"):
            detail += f" ({row['steps']:,} steps at {row['steps_per_s']:,.0f}/s)"
        print(f"{row['number']:>5} {row['state']:<9} {value:>8}  {detail}")
    print(f"finished {summary['finished']} (pruned {summary['pruned']}), failed {summary['failed']}")
    print(f"runs table (after `mlflow ui` at the repo root): {tracking.runs_url()}")
    best = summary.get("best")
    if best:
        within = "" if t.radius is None else f" within {t.radius * 1000:g} mm"
        print(f"best: trial {best['number']}, held-out success{within} {best['heldout_success_rate']:.3f}")
        print(f"promote it into the pipeline:\n  {best['promote']}")
        print(f"wrote {out_dir.relative_to(root)}/best_params.yaml and plots")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trials", type=positive_int, default=None, help="total trials across all workers (tune.trials)"
    )
    parser.add_argument("--study-name", default=None, help="default tune.study_name; letters, digits, _ . -")
    parser.add_argument("--storage", default=None, help="RDB URL (default $OPTUNA_STORAGE or sqlite optuna.db)")
    parser.add_argument("--timeout", type=positive_float, default=None, help="stop starting trials after this many s")
    parser.add_argument("--vram-limit-mb", type=positive_float, default=None, help="tune.vram_limit_mb")
    parser.add_argument("--steps-per-trial", type=positive_int, default=None, help="tune.steps_per_trial")
    parser.add_argument(
        "--objective", choices=["success_after_steps", "success_at_budget"], default=None, help="tune.objective"
    )
    parser.add_argument("--budget-s", type=positive_float, default=None, help="tune.budget_s (success_at_budget)")
    parser.add_argument("--seeds", type=positive_int, default=None, help="tune.seeds: training seeds per trial")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


COMMAND = StageCommand("tune", tune_stage, options)
