"""The `rlcore` command: `rlcore targets|hardware|train|evaluate|export|report|tune` (the stages'
code, as `python stages/X.py` runs it for DVC), `rlcore bench NAME` (rlcore.bench) and
`rlcore params` (the resolved params with every default). Each stage's options live beside its
code, in its module's COMMAND (rlcore.pipeline.cli.StageCommand), once for both ways in."""

from __future__ import annotations

from rlcore import __version__
from rlcore.pipeline.cli import STAGES, StageCommand, StageParser, stage_parser


def command(name: str) -> StageCommand:
    """The stage command `name` (its module's COMMAND)."""
    import importlib

    return importlib.import_module(STAGES[name][0]).COMMAND


def print_params(argv: list[str]) -> None:
    """`rlcore params [--params F] [--set K=V ...]`: the resolved params, every default filled in."""
    import sys

    import yaml

    from rlcore.pipeline.cli import EXPECTED
    from rlcore.pipeline.params import load_params_or_defaults

    parser = stage_parser("print the resolved params (the file, --set overrides, the schema's defaults)")
    parser.prog = "rlcore params"
    args = parser.parse_args(argv)
    try:
        params = load_params_or_defaults(args.params, args.overrides)
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")


def main(argv: list[str] | None = None) -> None:
    """`rlcore COMMAND [options]`."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = StageParser(
        prog="rlcore",
        description="rlcore: reproducible PPO reaching for robot arms. `dvc repro` runs the stages in order; "
        "each is also a command here. `rlcore COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"rlcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGES:
        sub.add_parser(name, help=STAGES[name][1], add_help=False)
    sub.add_parser("bench", help="benchmarks (`rlcore bench --help` lists them)", add_help=False)
    sub.add_parser("params", help="print the resolved params with every default", add_help=False)
    if not argv or argv[0] not in (*STAGES, "bench", "params"):
        parser.parse_args(argv)  # --help, --version, or a one-line error naming the commands
        return
    command_name, rest = argv[0], argv[1:]
    if command_name == "bench":
        import importlib

        importlib.import_module("rlcore.bench.__main__").main(rest, prog="rlcore bench")
    elif command_name == "params":
        print_params(rest)
    else:
        command(name=command_name).main(rest)
