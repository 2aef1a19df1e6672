"""Stage `train`: train a policy (rlcore PPO, or SB3's PPO, SAC or DQN) and log the run to MLflow.

Writes models/policy.pt, out/train.json and out/train_curve.csv. Checkpoints go to
train.checkpoint_dir (a persisted DVC output): run the stage again after an interruption and it
resumes, with the same MLflow run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlcore import runs, tracking  # noqa: E402
from rlcore.cli import StageError, run_stage, stage_parser, workspace  # noqa: E402
from rlcore.config_offpolicy import OFF_POLICY  # noqa: E402
from rlcore.ppo.algorithm import NonFiniteLossError  # noqa: E402
from rlcore.targets import TargetCacheError  # noqa: E402


def main(args, params) -> None:
    root = workspace()
    try:
        decision, device_note = runs.honour_explicit_device(params, runs.read_hardware(root / args.hardware))
        params, res = runs.resolve(params, decision)
        res.notes += [device_note] if device_note else []
        targets = runs.load_targets(params, root)
    except (runs.SetupError, TargetCacheError) as err:
        raise StageError(str(err)) from None
    runs.cpu_threads(params)
    ckpt_dir = root / params.train.checkpoint_dir
    print(
        f"train: {params.train.algo} on {params.env.backend} envs x{res.n_envs} ({res.env_device}), "
        f"policy on {res.policy_device}, minibatch {res.minibatch}, "
        + (
            f"replay buffer {res.estimate_mb:.0f} MB"
            if params.train.algo in OFF_POLICY
            else f"estimated peak {res.estimate_mb:.0f} MB"
        )
    )
    for note in res.notes:
        print(f"  - {note}")
    run_id = None
    sender = None
    extra = {
        "resolved.policy_device": res.policy_device,
        "resolved.env_device": res.env_device,
        "resolved.n_envs": res.n_envs,
        "resolved.minibatch": res.minibatch,
        "resolved.estimate_mb": round(res.estimate_mb, 1),
    }
    client = tracking.retry(tracking.client, "connecting to the MLflow store")

    def on_start(trainer, note):
        nonlocal run_id, sender
        if note:
            print(f"  - {note}")
        previous = trainer.extra.get("run_id")
        run_id = tracking.retry(
            lambda: tracking.open_run(None, params, "train", res.policy_device, previous, extra_params=extra),
            "opening the MLflow run",
        )
        trainer.extra["run_id"] = run_id
        if previous != run_id:  # a new run: the target cache it trains on is its dataset
            cache = Path(params.targets.path)
            tracking.log_dataset(run_id, cache if cache.is_absolute() else root / cache)
        notes = "; ".join(getattr(trainer, "compile_notes", []))
        if notes:
            print(f"  - torch.compile: {notes}")
            tracking.retry(lambda: client.set_tag(run_id, "compile", notes), "tagging the MLflow run")
        # a resumed run recomputes the updates after its checkpoint: keep the values already logged
        logged = tracking.last_logged_step(client, run_id) if previous == run_id else -1
        sender = tracking.MetricSender(client, run_id, skip_through=logged)  # background: never stalls training
        for row in getattr(trainer, "history", []):  # a killed run's updates it had not sent yet
            sender.add(row, int(row["step"]))

    def on_iteration(row):
        sender.add(row, int(row["step"]))

    def finish(status: str) -> None:
        """Deliver the queued metrics, then mark the run (both retried while the store is away)."""
        if sender is not None and (unsent := sender.close()):
            print(f"warning: {unsent} metrics could not be sent to MLflow run {run_id}", file=sys.stderr)
        if run_id is not None and status != "FINISHED":
            tracking.retry(lambda: tracking.end_run(run_id, status), "ending the MLflow run")

    try:
        summary, bundle = runs.train(params, res, targets, ckpt_dir, on_start, on_iteration)
    except NonFiniteLossError as err:
        finish("FAILED")
        raise StageError(f"{err} (the last good checkpoint in {ckpt_dir} is kept)") from None
    except KeyboardInterrupt:
        finish("KILLED")
        raise
    finish("FINISHED")
    model_path = root / args.model
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_suffix(".tmp")
    torch.save(bundle, tmp)
    tmp.replace(model_path)
    history = summary.pop("history")
    runs.write_curve(root / args.curve, history)
    result = {
        "run_id": run_id,
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
    }
    out = root / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    tracking.retry(lambda: client.log_metric(run_id, "train_wall_s", summary["wall_s"]), "logging train_wall_s")
    tracking.retry(lambda: client.log_artifact(run_id, str(model_path), "model"), "logging the model")
    tracking.retry(lambda: client.log_artifact(run_id, str(root / args.curve), "train"), "logging the curve")
    tracking.retry(lambda: tracking.end_run(run_id), "ending the MLflow run")
    (ckpt_dir / "last.pt").unlink(missing_ok=True)  # finished: a forced re-run starts fresh
    print(f"wrote {args.model}, {args.out}, {args.curve}; MLflow run {run_id}")
    print(f"runs table (after `mlflow ui` at the repo root): {tracking.runs_url()}")
    print(
        f"train: {summary['steps']:,} steps in {summary['wall_s']:.0f} s ({summary['fps']:,.0f} steps/s), "
        f"success {summary['success_rate']:.1%} at level {summary['curriculum_level']}"
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--hardware", default="out/hardware.json")
    parser.add_argument("--model", default="models/policy.pt")
    parser.add_argument("--out", default="out/train.json")
    parser.add_argument("--curve", default="out/train_curve.csv")
    run_stage(main, parser.parse_args(), logs_to_mlflow="train")
