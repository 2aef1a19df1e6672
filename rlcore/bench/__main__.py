"""`python -m rlcore.bench`: see rlcore.bench."""

from __future__ import annotations

import argparse
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
from rlcore.pipeline.params import load_params
from rlcore.runtime import probes as hw


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


def main(argv: list[str] | None = None) -> None:
    from rlcore.config.schema import ConfigError
    from rlcore.pipeline.cli import positive_int, stage_parser

    parser = stage_parser(DOC)
    parser.prog, parser.formatter_class = "python -m rlcore.bench", argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "what",
        choices=[
            *("envs", "vec", "batched", "batched-ppo", "update", "compile", "ppo"),
            *("workers", "gpu", "seeds", "rsl", "algos", "all"),
        ],
    )
    parser.add_argument("--n-envs", type=positive_int, nargs="+", default=None, help="n_envs to sweep")
    parser.add_argument("--steps", type=positive_int, default=None, help="steps per measurement")
    parser.add_argument("--rounds", type=rounds_arg, default=MIN_ROUNDS, help=f"alternating rounds (>= {MIN_ROUNDS})")
    from rlcore.bench.seeds import add_arguments, run_command

    add_arguments(parser)
    gpu_options = parser.add_argument_group("gpu")
    gpu_options.add_argument("--out", default="out/gpu_bench.json", help="gpu: the JSON it writes")
    gpu_options.add_argument(
        "--budget-steps", type=positive_int, default=20_000_000, help="gpu: most training steps to the target"
    )
    rsl_options = parser.add_argument_group("rsl")
    rsl_options.add_argument(
        "--budget-s", type=float, default=60.0, help="rsl: seconds of training per PPO and device (60)"
    )
    algos_options = parser.add_argument_group("algos")
    algos_options.add_argument(
        "--minutes", type=float, default=10.0, help="algos: minutes of training per algorithm and seed (10)"
    )
    algos_options.add_argument(
        "--algos", nargs="+", default=None, help="algos: rows to run (default all: " + ", ".join(ALGO_ROWS) + ")"
    )
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides) if Path(args.params).exists() else Params()
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    if args.what == "seeds":
        run_command(args, params)
        return
    if args.what == "gpu":
        run_gpu(args, params)
        return
    if args.what == "rsl":
        run_rsl(args, params)
        return
    if args.what == "algos":
        run_algos(args, params)
        return
    if args.what in ("envs", "all"):
        table = env_table(params, args.n_envs or [1, 2, 4, 8], args.steps or 4000, args.rounds)
        print_table(
            "PyBullet env steps/s",
            table,
            [("vec env", "kind", "s"), ("n_envs", "n_envs", "d"), ("steps/s", "fps", ",.0f")],
        )
    if args.what in ("vec", "all"):
        n = (args.n_envs or [params.hardware.n_envs_physics or placement.BULLET_ENVS])[0]
        table = vec_table(params, n, args.steps or 8192, args.rounds)
        cols = [
            ("vec env", "kind", "s"),
            ("n_envs", "n_envs", "d"),
            ("steps/s", "fps", ",.0f"),
            ("efficiency", "efficiency", ".0%"),
        ]
        print_table(f"Training vec envs, raw steps/s (efficiency: of {table['cores']} cores x single env)", table, cols)
    devices = usable_devices() if args.what in ("batched", "batched-ppo", "update", "all") else []
    if args.what in ("batched", "all"):
        table = batched_table(params, devices, args.n_envs or [256, 4096, 16384], rounds=args.rounds)
        cols = [
            ("device", "device", "s"),
            ("n_envs", "n_envs", "d"),
            ("env steps/s", "fps", ",.0f"),
            ("KB/env", "memory_per_env_kb", ".2f"),
        ]
        print_table("Batched twin env steps/s", table, cols)
    if args.what in ("batched-ppo", "all"):
        table = batched_ppo_table(params, devices, args.n_envs or [256, 4096, 16384], rounds=args.rounds)
        cols = [("device", "device", "s"), ("n_envs", "n_envs", "d"), ("PPO steps/s", "ppo_fps", ",.0f")]
        print_table("rlcore PPO on the batched twin, end to end (rollout + update)", table, cols)
    if args.what in ("update", "all"):
        n = (args.n_envs or [params.train.n_envs or placement.CPU_BATCHED_ENVS])[0]
        table = update_table(params, devices, n, args.rounds)
        cols = [
            ("device", "device", "s"),
            ("minibatch", "minibatch", "d"),
            ("samples/s", "samples_per_s", ",.0f"),
            ("GFLOP/s", "gflops", ",.1f"),
            ("mm peak", "matmul_peak_gflops", ",.1f"),
            ("of peak", "share_of_peak", ".0%"),
        ]
        print_table(f"PPO update at {n} envs x {params.train.n_steps} steps, vs the fp32 torch.mm peak", table, cols)
    if args.what == "compile":
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
    if args.what == "workers":
        table = start_method_table(params, (args.n_envs or [64])[0], args.rounds)
        cols = [("method", "method", "s"), ("n_envs", "n_envs", "d"), ("start s", "start_s", ".2f")]
        print_table("Seconds to start PyBullet worker processes", table, cols)
    if args.what in ("ppo", "all"):
        n = (args.n_envs or [params.hardware.n_envs_physics or placement.BULLET_ENVS])[0]
        for line in ppo_text(compare_ppo(params, n, args.steps or 8192, args.rounds)):
            print(line)


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


if __name__ == "__main__":
    main()
