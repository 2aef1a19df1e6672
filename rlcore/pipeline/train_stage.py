"""The train stage's body: resolve, train under a tracked MLflow run, write the policy file,
out/train.json and the curve, finish the run."""

from __future__ import annotations

import argparse

import torch

from rlcore.algos.ppo.algorithm import NonFiniteLossError
from rlcore.algos.registry import algorithm_for
from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.envs.targets import TargetCache, TargetCacheError
from rlcore.pipeline import train as runs
from rlcore.pipeline.cli import StageCommand, StageError, workspace
from rlcore.policy.file import robot_record
from rlcore.robots.chain import chain_of
from rlcore.runtime import files
from rlcore.tracking import runs as tracking
from rlcore.tracking.training import TrainingRun

OUTPUT_MB = 200  # the policy file, checkpoints and the curve, with room to spare
HELDOUT_TWIN_MAX = 10_000  # held-out targets the end-of-training twin score runs at once (a sample beyond)


def train_stage(params: Params, model: str, out: str, curve: str, hardware: str) -> dict:
    """Train what `train.algo` names with the hardware stage's decision; paths relative to the
    workspace. Returns out/train.json's contents."""
    root = workspace()
    try:
        decision, device_note = runs.honour_explicit_device(params, runs.read_hardware(root / hardware))
        params, res = runs.resolve(params, decision)
        res.notes += [device_note] if device_note else []
        targets = runs.load_targets(params, root)
    except (runs.SetupError, TargetCacheError) as err:
        raise StageError(str(err)) from None
    # every output is writable and the disk has room, before a minute of training is spent
    files.check_writable([root / model, root / out, root / curve, root / params.train.checkpoint_dir / "last.pt"])
    files.check_free_space(root, OUTPUT_MB)
    runs.cpu_threads(params)
    ckpt_dir = root / params.train.checkpoint_dir
    algorithm = algorithm_for(params)
    print(
        f"train: {params.train.algo} on {params.env.backend} envs x{res.n_envs} ({res.env_device}), "
        f"policy on {res.policy_device}, minibatch {res.minibatch}, {algorithm.summary_line} {res.estimate_mb:.0f} MB"
    )
    for note in res.notes:
        print(f"  - {note}")
    extra = {
        "resolved.policy_device": res.policy_device,
        "resolved.env_device": res.env_device,
        "resolved.n_envs": res.n_envs,
        "resolved.minibatch": res.minibatch,
        "resolved.estimate_mb": round(res.estimate_mb, 1),
    }
    with TrainingRun(params, root, res.policy_device, extra) as tracked:
        try:
            summary, bundle = runs.train(params, res, targets, ckpt_dir, tracked.on_start, tracked.on_iteration)
        except NonFiniteLossError as err:
            raise StageError(f"{err} (the last good checkpoint in {ckpt_dir} is kept)") from None
        model_path = root / model
        bundle["robot"] = robot_record(chain_of(params.robot), params.robot.urdf)
        with files.atomic_path(model_path) as tmp:
            torch.save(bundle, tmp)
        runs.write_curve(root / curve, summary["history"])
        twin = heldout_twin_score(bundle, params, targets, res.env_device)
        result = {
            "run_id": tracked.run_id,
            "steps": summary["steps"],
            "fps": round(summary["fps"], 1),
            "wall_s": round(summary["wall_s"], 2),
            "device": res.policy_device,
            "env_device": res.env_device,
            "backend": params.env.backend,
            "algo": params.train.algo,
            "n_envs": res.n_envs,
            "success_rate": summary["success_rate"],
            "episode_return": summary["episode_return"],
            "curriculum_level": summary["curriculum_level"],
            **{f"heldout_twin_{k}": v for k, v in twin.items()},
            **({"workcell": cell_of(params.env).id} if cell_of(params.env) else {}),
        }
        files.write_json(root / out, result)
        wall = {"train_wall_s": summary["wall_s"]}
        scores = {f"heldout_twin_{k}": v for k, v in twin.items() if k != "episodes"}
        tracked.finish(wall | scores | tracking.view_metrics(wall), [(model_path, "model"), (root / curve, "train")])
    (ckpt_dir / "last.pt").unlink(missing_ok=True)  # finished: a forced re-run starts fresh
    print(f"wrote {model}, {out}, {curve}; MLflow run {tracked.run_id or 'not opened (see the warning above)'}")
    print(f"runs table (after `mlflow ui` at the repo root): {tracking.runs_url()}")
    print(
        f"train: {summary['steps']:,} steps in {summary['wall_s']:.0f} s ({summary['fps']:,.0f} steps/s), "
        f"success {summary['success_rate']:.1%} of the last training episodes, at curriculum level "
        f"{summary['curriculum_level']} (noisy, mid-curriculum)"
    )
    print(
        f"  held-out, in the twin: {twin['success_rate']:.1%} ({twin['success_rate_ci_low']:.1%}-"
        f"{twin['success_rate_ci_high']:.1%}) of {twin['episodes']} targets within "
        f"{params.env.success_radius * 1000:g} mm, median final distance {twin['final_distance_mm_median']:.1f} mm"
        + (f", {twin['collision_rate']:.1%} ended on an obstacle" if "collision_rate" in twin else "")
        + "; `evaluate` gives the figure in the physics engine"
    )
    return result


def heldout_twin_score(bundle: dict, params: Params, targets: TargetCache, device: str) -> dict[str, float]:
    """The trained policy on every held-out target once (a sample of HELDOUT_TWIN_MAX where there
    are more) in the batched twin at accurate physics (a second or two): the expectation the
    training summary prints beside its training-episode rate, before `evaluate` gives the physics
    engine's figure."""
    from rlcore.pipeline.evaluate import evaluate_batched
    from rlcore.policy.file import policy_from_bundle

    held = len(targets.indices("heldout"))
    episodes = None if held <= HELDOUT_TWIN_MAX else HELDOUT_TWIN_MAX  # one env per episode: bound the memory
    score = evaluate_batched(policy_from_bundle(bundle, device), params, targets, episodes, params.eval.seed, device)
    keys = ("episodes", "success_rate", "success_rate_ci_low", "success_rate_ci_high", "final_distance_mm_median")
    return {k: score[k] for k in (*keys, "collision_rate") if k in score}


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hardware", default="out/hardware.json", help="the hardware stage's decision (out/hardware.json)"
    )
    parser.add_argument("--model", default="models/policy.pt", help="where the policy file goes (models/policy.pt)")
    parser.add_argument("--out", default="out/train.json", help="the run's summary, DVC metrics (out/train.json)")
    parser.add_argument(
        "--curve", default="out/train_curve.csv", help="one row per update, DVC plots (out/train_curve.csv)"
    )


def run(args: argparse.Namespace, params: Params) -> None:
    """The stage with its parsed command line."""
    train_stage(params, model=args.model, out=args.out, curve=args.curve, hardware=args.hardware)


COMMAND = StageCommand("train", run, options, "train")
