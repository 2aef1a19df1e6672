"""The report stage's body (stages/report.py): the benchmarks params.report names, figures and
out/report/report.md, out/bench.json, and both in the train stage's MLflow run."""

from __future__ import annotations

import argparse
from typing import Any

from rlcore.bench import contention, report
from rlcore.bench.ppo import compare_ppo
from rlcore.bench.tables import batched_table, env_table, update_table
from rlcore.config.schema import Params
from rlcore.envs.engines import LABELS, engine_of
from rlcore.pipeline import placement
from rlcore.pipeline.cli import StageCommand, StageError, workspace
from rlcore.runtime import files
from rlcore.tracking import runs as tracking


def measure(params: Params, devices: list[str]) -> dict[str, Any]:
    """The benchmarks, each in `report.rounds` alternating rounds (rlcore.bench)."""
    r = params.report
    runs = {
        "env": lambda: env_table(params, r.vec_n_envs, r.env_steps, r.rounds),
        "batched": lambda: batched_table(params, devices, r.batched_n_envs, rounds=r.rounds),
        "update": lambda: update_table(params, devices, params.train.n_envs or placement.CPU_BATCHED_ENVS, r.rounds),
        "ppo": lambda: compare_ppo(params, r.ppo_n_envs, r.ppo_steps, r.rounds),
    }
    return {name: run() for name, run in runs.items() if name in r.benchmarks}


def report_stage(args: argparse.Namespace, params: Params) -> None:
    """The `report` stage with its parsed command line (stages/report.py)."""
    root = workspace()
    hardware = report.load_json(root / "out" / "hardware.json")
    decision = hardware.get("decision", {})
    devices = [p["device"] for p in hardware.get("probes", []) if p.get("usable")] or ["cpu"]
    if params.report.benchmarks:
        print(
            f"report: benchmarking {', '.join(params.report.benchmarks)} on {', '.join(devices)}, "
            f"{params.report.rounds} alternating rounds (all four: about 1-4 minutes on 2 cores)"
        )
    else:
        print("report: no benchmarks (report.benchmarks: []), the run's own figures only")
    out_dir = root / args.out_dir
    algos_lines: list[str] = []
    if params.report.algos:  # checked before the benchmarks: a missing comparison stops at once
        try:
            algos_lines, algos_image = report.algos_section(root / "out" / "algos", out_dir)
        except FileNotFoundError as err:
            raise StageError(str(err)) from None
    if params.report.contention:
        try:
            algos_lines += contention.report_lines(root / "out" / "contention.json")
        except FileNotFoundError as err:
            raise StageError(str(err)) from None
    results = measure(params, devices)
    engine = LABELS[engine_of(params)]
    curve, episodes = root / "out" / "train_curve.csv", root / "out" / "eval_episodes.csv"
    images = report.figures(results, curve, episodes, out_dir, engine, params.eval.radii)
    images += [algos_image] if algos_lines else []
    train = report.load_json(root / "out" / "train.json")
    evaluation = report.load_json(root / "out" / "eval.json")
    files.write_text(out_dir / "report.md", report.markdown(results, train, evaluation, images, decision, algos_lines))
    files.write_text(out_dir / "bench_raw.json", report.raw_json(results))
    metrics = report.bench_metrics(results)
    bench_path = root / args.bench
    files.write_json(bench_path, metrics)
    print(f"wrote {args.out_dir}/report.md ({len(images)} figures) and {args.bench}")
    for key, value in metrics.items():
        print(f"  {key:<22} {value}")
    run_id = train.get("run_id")
    if run_id:
        logged = {f"bench_{key}": float(value) for key, value in metrics.items()}
        artifacts = [(out_dir, "report"), (bench_path, "report")]
        tracking.log_results(run_id, logged, artifacts, what="logging the report")
        print(f"logged into MLflow run {run_id}; runs table: {tracking.runs_url()}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default="out/report", help="report.md and its figures (out/report)")
    parser.add_argument("--bench", default="out/bench.json", help="the benchmark metrics, DVC metrics (out/bench.json)")


COMMAND = StageCommand("report", report_stage, options, "report")
