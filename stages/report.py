"""Stage `report`: benchmarks (rlcore.bench) and a readable report of this pipeline run.

Writes out/report/report.md with PNG figures and out/bench.json (metrics: fps_rlcore, fps_sb3,
ratio_rlcore_vs_sb3, efficiency_*, spread_*, ...), and logs both into the MLflow run that `train` opened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.bench import report  # noqa: E402
from rlcore.envs.engines import LABELS, engine_of  # noqa: E402
from rlcore.pipeline.cli import StageError, run_stage, stage_parser, workspace  # noqa: E402
from rlcore.tracking import runs as tracking  # noqa: E402


def main(args, params) -> None:
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
    results = report.measure(params, devices)
    engine = LABELS[engine_of(params)]
    images = report.figures(
        results, root / "out" / "train_curve.csv", root / "out" / "eval_episodes.csv", out_dir, engine
    )
    images += [algos_image] if algos_lines else []
    train = report.load_json(root / "out" / "train.json")
    evaluation = report.load_json(root / "out" / "eval.json")
    (out_dir / "report.md").write_text(report.markdown(results, train, evaluation, images, decision, algos_lines))
    (out_dir / "bench_raw.json").write_text(report.raw_json(results))
    metrics = report.bench_metrics(results)
    bench_path = root / args.bench
    bench_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {args.out_dir}/report.md ({len(images)} figures) and {args.bench}")
    for key, value in metrics.items():
        print(f"  {key:<22} {value}")
    run_id = train.get("run_id")
    if run_id:
        logged = {f"bench_{key}": float(value) for key, value in metrics.items()}
        files = [(out_dir, "report"), (bench_path, "report")]
        tracking.log_results(run_id, logged, files, what="logging the report")
        print(f"logged into MLflow run {run_id}; runs table: {tracking.runs_url()}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out-dir", default="out/report")
    parser.add_argument("--bench", default="out/bench.json")
    run_stage(main, parser.parse_args(), logs_to_mlflow="report")
