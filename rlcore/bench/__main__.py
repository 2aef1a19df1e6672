"""`python -m rlcore.bench`: see rlcore.bench."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from rlcore.bench import __doc__ as DOC
from rlcore.bench.algos import ROWS as ALGO_ROWS
from rlcore.bench.ppo import compare_ppo, ppo_text
from rlcore.bench.rounds import MIN_ROUNDS, machine_text, rounds_arg
from rlcore.bench.tables import (
    batched_ppo_table,
    batched_table,
    compile_table,
    env_table,
    start_method_table,
    update_table,
    vec_table,
)
from rlcore.config.schema import Params
from rlcore.pipeline import placement
from rlcore.pipeline.params import load_params_or_defaults
from rlcore.runtime import probes as hw


@cache
def usable_devices() -> list[str]:
    return [p.device for p in hw.probe_all() if p.usable]


def print_table(title: str, table: dict[str, Any], columns: list[tuple[str, str, str]]) -> None:
    """One table: a column per (header, row key, format), the figure's spread, the machine line."""
    print(f"{title} (median of {table['rounds']} alternating rounds; spread = (max-min)/median)")
    print("  ".join(f"{h:>12}" for h, _, _ in columns) + f"  {'spread':>7}")
    for r in table["rows"]:
        cells = ["n/a" if r[key] is None else f"{r[key]:{fmt}}" for _, key, fmt in columns]
        print("  ".join(f"{c:>12}" for c in cells) + f"  {r['spread'].spread:>7.0%}")
    print(machine_text(table["machine"]))
    print()


def run_envs(args: argparse.Namespace, params: Params) -> None:
    table = env_table(params, args.n_envs or [1, 2, 4, 8], args.steps or 4000, args.rounds)
    cols = [("vec env", "kind", "s"), ("n_envs", "n_envs", "d"), ("steps/s", "fps", ",.0f")]
    print_table("PyBullet env steps/s", table, cols)


def run_vec(args: argparse.Namespace, params: Params) -> None:
    n = (args.n_envs or [params.hardware.n_envs_physics or placement.BULLET_ENVS])[0]
    table = vec_table(params, n, args.steps or 8192, args.rounds)
    cols = [
        ("vec env", "kind", "s"),
        ("n_envs", "n_envs", "d"),
        ("steps/s", "fps", ",.0f"),
        ("efficiency", "efficiency", ".0%"),
    ]
    print_table(f"Training vec envs, raw steps/s (efficiency: of {table['cores']} cores x single env)", table, cols)


def run_batched(args: argparse.Namespace, params: Params) -> None:
    table = batched_table(params, usable_devices(), args.n_envs or [256, 4096, 16384], rounds=args.rounds)
    cols = [
        ("device", "device", "s"),
        ("n_envs", "n_envs", "d"),
        ("env steps/s", "fps", ",.0f"),
        ("KB/env", "memory_per_env_kb", ".2f"),
    ]
    print_table("Batched twin env steps/s", table, cols)


def run_batched_ppo(args: argparse.Namespace, params: Params) -> None:
    table = batched_ppo_table(params, usable_devices(), args.n_envs or [256, 4096, 16384], rounds=args.rounds)
    cols = [("device", "device", "s"), ("n_envs", "n_envs", "d"), ("PPO steps/s", "ppo_fps", ",.0f")]
    print_table("rlcore PPO on the batched twin, end to end (rollout + update)", table, cols)


def run_update(args: argparse.Namespace, params: Params) -> None:
    n = (args.n_envs or [params.train.n_envs or placement.CPU_BATCHED_ENVS])[0]
    table = update_table(params, usable_devices(), n, args.rounds)
    cols = [
        ("device", "device", "s"),
        ("minibatch", "minibatch", "d"),
        ("samples/s", "samples_per_s", ",.0f"),
        ("GFLOP/s", "gflops", ",.1f"),
        ("mm peak", "matmul_peak_gflops", ",.1f"),
        ("of peak", "share_of_peak", ".0%"),
    ]
    print_table(f"PPO update at {n} envs x {params.train.n_steps} steps, vs the fp32 torch.mm peak", table, cols)


def run_compile(args: argparse.Namespace, params: Params) -> None:
    table = compile_table(params, "cpu", args.n_envs or [256, 4096], args.rounds)
    cols = [
        ("what", "what", "s"),
        ("n_envs", "n_envs", "d"),
        ("eager", "eager", ",.0f"),
        ("compiled", "compiled", ",.0f"),
        ("speedup", "speedup", ".2f"),
    ]
    for row in table["rows"]:
        row["spread"] = row["spread_compiled"]
    print_table("train.compile off vs on, CPU, steps/s (twin: env steps; ppo: end to end)", table, cols)


def run_workers(args: argparse.Namespace, params: Params) -> None:
    table = start_method_table(params, (args.n_envs or [64])[0], args.rounds)
    cols = [("method", "method", "s"), ("n_envs", "n_envs", "d"), ("start s", "start_s", ".2f")]
    print_table("Seconds to start PyBullet worker processes", table, cols)


def run_ppo(args: argparse.Namespace, params: Params) -> None:
    n = (args.n_envs or [params.hardware.n_envs_physics or placement.BULLET_ENVS])[0]
    for line in ppo_text(compare_ppo(params, n, args.steps or 8192, args.rounds)):
        print(line)


def run_all(args: argparse.Namespace, params: Params) -> None:
    """Every throughput table, as the report measures them (each command's defaults)."""
    for name in ALL:
        COMMANDS[name].run(args, params)


def run_rsl(args: argparse.Namespace, params: Params) -> None:
    """`bench rsl`: rlcore PPO vs rsl_rl PPO on the twin, per usable device (rlcore.bench.rsl)."""
    import json

    from rlcore.bench.rsl import compare, import_rsl, text
    from rlcore.pipeline import train as runs

    import_rsl()  # the install line before any work
    try:
        targets = runs.load_targets(params, Path.cwd())
    except Exception as err:  # TargetCacheError: say what to run
        raise SystemExit(f"error: {err}") from None
    n = (args.n_envs or [params.train.n_envs or placement.CPU_BATCHED_ENVS])[0]
    result = compare(params, targets, usable_devices(), n, args.budget_s, rounds=args.rounds)
    for line in text(result):
        print(line)
    out = Path("out/rsl_bench.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=lambda o: o.to_dict()) + "\n")
    print(f"wrote {out}")


def run_algos(args: argparse.Namespace, params: Params) -> None:
    """`bench algos`: each algorithm for --minutes on the same PyBullet env (rlcore.bench.algos)."""
    from rlcore.bench import algos
    from rlcore.pipeline import train as runs

    unknown = [a for a in args.algos or [] if a not in algos.ROWS]
    if unknown:
        raise SystemExit(f"error: --algos {unknown[0]!r}: one of {', '.join(repr(r) for r in algos.ROWS)}")
    if args.minutes <= 0:
        raise SystemExit(f"error: --minutes {args.minutes:g}: must be positive")
    root = Path.cwd()
    try:
        decision = runs.read_hardware(root / "out" / "hardware.json")
        targets = runs.load_targets(params, root)
    except Exception as err:  # SetupError, TargetCacheError: say what to run
        raise SystemExit(f"error: {err}") from None
    result = algos.run(params, targets, decision, args.minutes, args.seeds or 1, labels=args.algos)
    for line in algos.text(result):
        print(line)
    for path in algos.write(result, root / "out" / "algos"):
        print(f"wrote {path.relative_to(root)}")


def run_gpu(args: argparse.Namespace, params: Params) -> None:
    """`gpu`: every GPU figure in one run, written to --out as JSON."""
    import json

    from rlcore.bench import gpu
    from rlcore.envs.targets import TargetCacheError
    from rlcore.pipeline.train import load_targets

    try:
        targets = load_targets(params, Path.cwd())
    except TargetCacheError as err:
        raise SystemExit(f"error: {err} (build it where pybullet installs and carry data/targets.npz along)") from None
    sizes = args.n_envs or gpu.SIZES
    result = gpu.run(params, targets, sizes, args.rounds, args.budget_steps, args.target, args.score_every)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    for line in gpu.lines(result):
        print(line)
    print(f"wrote {out}")


def gpu_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.pipeline.cli import positive_float, positive_int

    parser.add_argument("--out", default="out/gpu_bench.json", help="the JSON it writes (out/gpu_bench.json)")
    parser.add_argument(
        "--budget-steps", type=positive_int, default=20_000_000, help="most training steps to the target"
    )
    parser.add_argument("--score-every", type=positive_int, default=20, help="updates between twin scores (20)")
    parser.add_argument("--target", type=positive_float, default=0.95, help="held-out success to time (0.95)")


def rsl_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-s", type=float, default=60.0, help="seconds of training per PPO and device (60)")


def algos_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.pipeline.cli import positive_int

    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of training per algorithm and seed (10)")
    rows = ", ".join(ALGO_ROWS)
    parser.add_argument("--algos", nargs="+", default=None, help=f"rows to run (default all: {rows})")
    parser.add_argument("--seeds", type=positive_int, default=None, help="training seeds per algorithm (1)")


def contention_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.bench.contention import ROWS

    parser.add_argument("--rows", nargs="+", default=None, help=f"rows to run (default all: {', '.join(ROWS)})")
    parser.add_argument("--twin-steps", type=int, default=None, help="training steps per twin run (500,000)")
    parser.add_argument("--physics-steps", type=int, default=None, help="training steps per PyBullet run (50,000)")


def run_contention(args: argparse.Namespace, params: Params) -> None:
    """`bench contention`: k trainings at once and one beside a busy loop (rlcore.bench.contention)."""
    from rlcore.bench import contention
    from rlcore.runtime import files

    rows = args.rows or list(contention.ROWS)
    unknown = [r for r in rows if r not in contention.ROWS]
    if unknown:
        raise SystemExit(f"error: --rows {unknown[0]!r}: one of {', '.join(repr(r) for r in contention.ROWS)}")
    if not Path(params.targets.path).is_file():
        raise SystemExit(f"error: {params.targets.path} is missing: run `dvc repro targets` first")
    steps = {k: v for k, v in (("twin", args.twin_steps), ("physics", args.physics_steps)) if v}
    result = contention.run(params, rows, args.rounds, steps)
    for line in contention.text(result):
        print(line)
    out = Path("out/contention.json")
    files.write_json(out, result)
    print(f"wrote {out}")


def seeds_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.bench.seeds import add_arguments

    add_arguments(parser)


def run_seeds(args: argparse.Namespace, params: Params) -> None:
    from rlcore.bench.seeds import run_command

    run_command(args, params)


def gallery_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.bench.gallery import add_arguments

    add_arguments(parser)


def run_gallery(args: argparse.Namespace, params: Params) -> None:
    from rlcore.bench.gallery import run_command

    run_command(args, params)


def workcell_options(parser: argparse.ArgumentParser) -> None:
    from rlcore.bench.workcell import add_arguments

    add_arguments(parser)


def run_workcell(args: argparse.Namespace, params: Params) -> None:
    from rlcore.bench.workcell import run_command

    run_command(args, params)


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, what it runs, and its own options beyond the shared ones."""

    help: str
    run: Callable[[argparse.Namespace, Params], None]
    options: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {
    "envs": Command("raw steps/s of env.physics's engine: one env, SB3 DummyVecEnv / SubprocVecEnv", run_envs),
    "vec": Command("the physics backend's vec envs at 64 envs: shared memory, SubprocVecEnv, one chunk", run_vec),
    "batched": Command("the batched twin's env steps/s and memory per env on each usable device", run_batched),
    "batched-ppo": Command("end-to-end rlcore PPO steps/s on the twin, per device and n_envs", run_batched_ppo),
    "update": Command("the PPO update's samples/s and GFLOP/s beside the device's fp32 matmul peak", run_update),
    "compile": Command("train.compile off against on, on the CPU: twin and PPO steps/s", run_compile),
    "ppo": Command("rlcore PPO against SB3 PPO on the same physics env and hyperparameters", run_ppo),
    "workers": Command("seconds to start 64 worker processes under each start method", run_workers),
    "gpu": Command("every GPU figure in one run, the CPU beside it (rlcore.bench.gpu)", run_gpu, gpu_options),
    "seeds": Command("N training seeds of the params: held-out success with intervals", run_seeds, seeds_options),
    "rsl": Command("rlcore PPO against rsl_rl's PPO on the twin (needs the bench extra)", run_rsl, rsl_options),
    "algos": Command("every algorithm for the same minutes on the same env, scored", run_algos, algos_options),
    "contention": Command(
        "k trainings at once, and one beside a busy loop: per-run and aggregate steps/s",
        run_contention,
        contention_options,
    ),
    "gallery": Command(
        "five arms of example-robot-data by robot.urdf alone: train, evaluate on both engines",
        run_gallery,
        gallery_options,
    ),
    "workcell": Command(
        "the workcell's collision verdicts: twin, PyBullet, MuJoCo; with --seeds, policy vs reference",
        run_workcell,
        workcell_options,
    ),
    "all": Command("envs, vec, batched, batched-ppo, update and ppo, one after another", run_all),
}
ALL = ("envs", "vec", "batched", "batched-ppo", "update", "ppo")


def build_parser(prog: str = "python -m rlcore.bench") -> argparse.ArgumentParser:
    """The bench's parser: a subcommand per COMMANDS entry, each with the shared options and its own."""
    from rlcore.pipeline.cli import StageParser, positive_int, stage_parser

    shared = stage_parser(None, add_help=False)  # --params, --set
    shared.add_argument("--n-envs", type=positive_int, nargs="+", default=None, help="n_envs to sweep")
    shared.add_argument("--steps", type=positive_int, default=None, help="steps per measurement")
    shared.add_argument("--rounds", type=rounds_arg, default=MIN_ROUNDS, help=f"alternating rounds (>= {MIN_ROUNDS})")
    parser = StageParser(prog=prog, description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True, metavar="COMMAND", parser_class=StageParser)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help, parents=[shared])
        if command.options:
            command.options(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m rlcore.bench") -> None:
    """Parse `python -m rlcore.bench COMMAND [options]` and run the command from COMMANDS."""
    from rlcore.config.schema import ConfigError
    from rlcore.pipeline.cli import EXPECTED, expected_os_error

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        params = load_params_or_defaults(args.params, args.overrides)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    try:
        COMMANDS[args.what].run(args, params)
    except SystemExit as done:  # a command's own one-line error: exit code 2, as the stages'
        if isinstance(done.code, str):
            parser.exit(2, f"{done.code}\n")
        raise
    except (*EXPECTED, OSError) as err:
        if os.environ.get("RLCORE_DEBUG") or (isinstance(err, OSError) and not expected_os_error(err)):
            raise
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
