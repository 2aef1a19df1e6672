"""Shared command-line plumbing for the stage scripts: --params, --set and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from rlcore.config import ConfigError, Params, load_params


class StageError(RuntimeError):
    """A problem the user can fix (missing cache, stale model...); printed as one line."""


def repo_root() -> Path:
    """The DVC/repo root: DVC_ROOT when DVC runs the stage, else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def stage_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every stage takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param with a dotted key, e.g. --set env.success_radius=0.03 (repeatable)",
    )
    return parser


def run_stage(main: Callable[[argparse.Namespace, Params], int | None], args: argparse.Namespace) -> None:
    """Validate params, run the stage, and turn user errors into one line on stderr (exit 2)."""
    try:
        params = load_params(args.params, args.overrides)
        code = main(args, params)
    except (ConfigError, StageError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
