"""Stage `evaluate`: the deterministic policy on held-out targets in the physics engine of
`env.physics` (PyBullet or MuJoCo, accurate physics).

Writes out/eval.json, out/eval_episodes.csv and out/eval.gif (a one-frame placeholder when
eval.gif_episodes is 0), and logs them into the MLflow run
that `train` opened. Outside the DAG: --model PATH evaluates any checkpoint, --episodes N,
--gui opens a live PyBullet or MuJoCo window (demo mode); such ad-hoc runs write under out/adhoc/ and log
nothing to MLflow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlcore.envs.engines import LABELS, engine_of  # noqa: E402
from rlcore.envs.targets import TargetCacheError  # noqa: E402
from rlcore.pipeline import train as runs  # noqa: E402
from rlcore.pipeline.cli import StageError, positive_int, run_stage, stage_parser, workspace  # noqa: E402
from rlcore.pipeline.evaluate import describe, evaluate, placeholder_gif, render_gif, write_episodes  # noqa: E402
from rlcore.policy.file import load_policy  # noqa: E402
from rlcore.tracking import runs as tracking  # noqa: E402


def main(args, params) -> None:
    root = workspace()
    model_path = Path(args.model) if args.model else root / "models" / "policy.pt"
    if not model_path.is_file():
        raise StageError(f"model {model_path} is missing: run `dvc repro train` (or `python stages/train.py`) first")
    try:
        policy, bundle = load_policy(str(model_path))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        why = tracking.first_line(err, 200)
        raise StageError(f"model {model_path} is not a readable rlcore policy file ({why})") from None
    try:
        targets = runs.load_targets(params, root)
    except TargetCacheError as err:
        raise StageError(str(err)) from None
    episodes = args.episodes if args.episodes is not None else params.eval.episodes
    if args.gui and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        # PyBullet's GUI exits the process when it cannot reach an X server (MuJoCo's viewer fails): check first
        raise StageError("--gui needs a display (DISPLAY is not set); run without --gui for the GIF")
    metrics, rows = evaluate(policy, params, targets, episodes, params.eval.seed, progress=True, gui=args.gui)
    # --model/--episodes/--gui are ad-hoc runs: they write under out/adhoc/ and leave the
    # pipeline's outputs and its MLflow run alone
    adhoc = bool(args.model or args.episodes is not None or args.gui)
    base = "out/adhoc" if adhoc else "out"
    args.out = args.out or f"{base}/eval.json"
    args.episodes_csv = args.episodes_csv or f"{base}/eval_episodes.csv"
    args.gif = args.gif or f"{base}/eval.gif"
    out = root / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}, indent=2) + "\n"
    )
    episodes_csv = root / args.episodes_csv
    write_episodes(episodes_csv, rows)
    gif = root / args.gif
    if params.eval.gif_episodes > 0:
        frames = render_gif(policy, params, targets, gif, params.eval.gif_episodes, params.eval.seed)
        print(f"wrote {args.gif} ({frames} frames)")
    else:
        placeholder_gif(gif, "no episodes rendered (eval.gif_episodes: 0)")
    engine = LABELS[engine_of(params)]
    print(f"evaluate ({bundle['algo']} policy, {metrics['episodes']} held-out episodes, {engine} accurate physics):")
    for line in describe(metrics):
        print(f"  {line}")
    train_json = root / "out" / "train.json"
    if not adhoc and train_json.is_file():
        run_id = json.loads(train_json.read_text()).get("run_id")
        if run_id:
            logged = {
                (key if key.startswith("eval") else f"eval_{key}"): float(value)
                for key, value in metrics.items()
                if isinstance(value, (int, float))
            }
            files = [(out, "eval"), (episodes_csv, "eval")] + ([(gif, "eval")] if params.eval.gif_episodes > 0 else [])
            tracking.log_results(run_id, logged, files, {"evaluated": "true"}, "logging the evaluation")
            print(f"logged into MLflow run {run_id}; runs table: {tracking.runs_url()}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--model", default=None, help="policy file (default models/policy.pt)")
    parser.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes (default eval.episodes: every held-out target)"
    )
    parser.add_argument("--gui", action="store_true", help="show a live PyBullet or MuJoCo window")
    parser.add_argument("--out", default=None, help="default out/eval.json (out/adhoc/ for ad-hoc runs)")
    parser.add_argument("--episodes-csv", default=None)
    parser.add_argument("--gif", default=None)
    run_stage(main, parser.parse_args(), logs_to_mlflow="evaluate")
