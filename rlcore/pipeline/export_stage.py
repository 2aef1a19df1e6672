"""The export stage's body (stages/export.py): the trained policy as models/policy.onnx for a robot
controller, its parity with torch, the controller on held-out episodes, the model in MLflow."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.envs.engines import LABELS, engine_of
from rlcore.envs.targets import TargetCacheError
from rlcore.pipeline import train as runs
from rlcore.pipeline.cli import StageCommand, StageError, workspace
from rlcore.runtime import files

TOLERANCE = 1e-5  # onnxruntime vs torch: on the action, and on the command as a fraction of the velocity limit


def export_stage(args: argparse.Namespace, params: Params) -> None:
    """The `export` stage with its parsed command line (stages/export.py)."""
    from rlcore.evaluation.metrics import radius_name
    from rlcore.pipeline.evaluate import evaluate, evaluate_controller, load_checked_policy
    from rlcore.policy import onnx_export as export
    from rlcore.policy.controller import Controller, WorkcellMismatch
    from rlcore.policy.reference import DlsController
    from rlcore.robots.chain import read_chain

    root = workspace()
    policy, bundle = load_checked_policy(root / "models" / "policy.pt", params)  # finite, for this robot
    train_json = root / "out" / "train.json"
    run_id = json.loads(train_json.read_text()).get("run_id") if train_json.is_file() else None
    if run_id:
        from rlcore.tracking import runs as tracking

        tracking.check_run(run_id)  # a store that cannot take the model stops before the work
    try:
        targets = runs.load_targets(params, root)
    except TargetCacheError as err:
        raise StageError(str(err)) from None
    chain = read_chain(params.robot.urdf, params.robot.ee_link)
    onnx_path, out = root / args.onnx, root / args.out
    files.check_writable([onnx_path, out])
    method = None if params.export.exporter == "auto" else params.export.exporter
    # exported and checked beside the old model, which it replaces only once it has passed
    with files.atomic_path(onnx_path) as candidate:
        used = export.export_onnx(bundle, chain, params.env.control_hz, candidate, method)
        obs = export.parity_observations(bundle, params, targets, params.export.parity_observations, params.seed)
        diff = export.parity(bundle, candidate, obs)
        size_kb = candidate.stat().st_size / 1024
        worst = max(diff["max_abs_action"], diff["max_abs_velocity_over_limit"])
        if not worst <= TOLERANCE:  # NaN fails too
            raise StageError(
                f"the ONNX export does not match the torch policy within {TOLERANCE:.0e} ({worst:.1e}): "
                f"{args.onnx} is left as it was"
            )
    print(f"wrote {args.onnx} ({used} exporter, opset {export.OPSET}, {size_kb:.0f} KB)")
    print(
        f"  onnxruntime vs torch on {diff['observations']:,} observations: action {diff['max_abs_action']:.1e}, "
        f"command {diff['max_abs_velocity_over_limit']:.1e} of the velocity limit (tolerance {TOLERANCE:.0e})"
    )
    try:
        controller = Controller(onnx_path, workcell=cell_of(params.env).id)
    except WorkcellMismatch as err:
        raise StageError(f"{err} (env.workcell = {params.env.workcell})") from None
    result = {
        "exporter": used,
        "opset": export.OPSET,
        **diff,
        **{f"latency_{k}": v for k, v in controller.latency().items()},
    }
    episodes = params.export.controller_episodes
    if episodes:
        torch_metrics, _ = evaluate(policy, params, targets, episodes, params.eval.seed)
        ctl_metrics, _ = evaluate_controller(controller, params, targets, episodes, params.eval.seed)
        compared = [("torch", torch_metrics), ("controller", ctl_metrics)]
        if params.eval.reference == "dls":  # the classical reference through the same controller API
            reference = DlsController.from_model(onnx_path, params.eval.dls_damping)
            compared.append(
                ("reference", evaluate_controller(reference, params, targets, episodes, params.eval.seed)[0])
            )
        keys = [f"within_{radius_name(r)}" for r in params.eval.radii] + ["success_rate"]
        for name, metrics in compared:
            for key in keys:
                result.update({f"{name}_{key}{end}": metrics[f"{key}{end}"] for end in ("", "_ci_low", "_ci_high")})
            result[f"{name}_final_distance_mm_median"] = metrics["final_distance_mm_median"]
        result["controller_episodes"] = episodes
        print(f"  {episodes} held-out episodes in {LABELS[engine_of(params)]}, through the controller API:")
        for name, metrics in compared:
            rates = ", ".join(f"{metrics[k]:.1%} within {k.removeprefix('within_')}" for k in keys[:-1])
            print(f"    {name:<10} {rates}; median {metrics['final_distance_mm_median']:.3f} mm")
    print(f"  controller step at batch 1: p50 {result['latency_p50_ms']:.3f} ms, p99 {result['latency_p99_ms']:.3f} ms")
    files.write_json(out, {k: (round(v, 9) if isinstance(v, float) else v) for k, v in result.items()})
    log_to_mlflow(root, run_id, onnx_path, obs[:1], result, params)


def log_to_mlflow(root: Path, run_id: str | None, onnx_path: Path, example, result: dict, params) -> None:
    """The model into the train stage's run (`run_id`, from out/train.json; onnx flavor),
    registered when it is good enough."""
    from rlcore.tracking import runs as tracking
    from rlcore.tracking.registry import MODEL_NAME, log_onnx_model

    eval_json = root / "out" / "eval.json"
    if not run_id:
        print("  no MLflow run in out/train.json: the model is not logged")
        return
    success = json.loads(eval_json.read_text()).get("success_rate") if eval_json.is_file() else None
    logged = log_onnx_model(run_id, onnx_path, example, success, params.export.register_min_success)
    metrics = {f"export_{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))}
    tracking.log_results(run_id, metrics, [(root / "out" / "export.json", "export")], None, "logging the export")
    print(f"  logged {logged['model_uri']} into MLflow run {run_id}; runs table: {tracking.runs_url()}")
    if logged["version"]:
        champion = "now the champion" if logged["champion"] else "the champion stays"
        print(f"  registered {MODEL_NAME} version {logged['version']} ({champion})")
    else:
        print(f"  not registered: {logged['not_registered']}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", default="models/policy.onnx", help="the ONNX model it writes (models/policy.onnx)")
    parser.add_argument("--out", default="out/export.json", help="parity and controller figures (out/export.json)")


COMMAND = StageCommand("export", export_stage, options, "export")
