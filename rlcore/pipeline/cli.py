"""Shared command-line plumbing for the stage scripts: --params, --set and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlcore.config.schema import ConfigError, Params
from rlcore.envs.targets import TargetCacheError
from rlcore.pipeline.params import load_params
from rlcore.robots.chain import UrdfError
from rlcore.runtime.files import DISK_ERRNOS, DiskError
from rlcore.tracking import store
from rlcore.tracking.store import StoreError


class StageError(RuntimeError):
    """A problem the user can fix (missing cache, stale model...); printed as one line."""


# the failures a stage reports in one line (anything else is a bug: its traceback stays)
EXPECTED = (ConfigError, StageError, StoreError, DiskError, TargetCacheError, UrdfError)


def expected_os_error(err: OSError) -> bool:
    """A missing file, or a disk that is full, read-only or not ours: said in one line."""
    return isinstance(err, (FileNotFoundError, DiskError)) or err.errno in DISK_ERRNOS


def workspace() -> Path:
    """Where a stage reads its deps and writes its outs: the directory it runs in. DVC runs a
    queued or temporary experiment in a workspace of its own (under .dvc/tmp/exps/), so this is
    never DVC_ROOT; only the MLflow store is shared (rlcore.tracking.store)."""
    return Path.cwd().resolve()


class StageParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): `error: argument --x: ... (see --help)`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def stage_parser(description: str | None, add_help: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every stage takes (add_help=False: as a parent of others)."""
    parser = StageParser(description=description, add_help=add_help)
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


def run_stage(
    main: Callable[[argparse.Namespace, Params], int | None], args: argparse.Namespace, logs_to_mlflow: str = ""
) -> None:
    """Validate params, run the stage, and turn what the user can fix (bad params or files, a full
    or read-only disk, a broken or absent tracking store) into one line on stderr, exit code 2.
    RLCORE_DEBUG=1 shows the traceback instead. A stage that logs to MLflow names itself in
    `logs_to_mlflow`: it then holds the store's lock (one writer at a time on SQLite) while it runs."""
    try:
        params = load_params(args.params, args.overrides)
        with store.store_lock(logs_to_mlflow) if logs_to_mlflow else nullcontext():
            code = main(args, params)
    except (*EXPECTED, OSError) as err:
        if os.environ.get("RLCORE_DEBUG") or (isinstance(err, OSError) and not expected_os_error(err)):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


# every stage: its module (imported when it runs, so a stage's imports stay its own) and help line
STAGES: dict[str, tuple[str, str]] = {
    "targets": ("rlcore.pipeline.targets_stage", "build the reachable-target cache (data/targets.npz)"),
    "hardware": ("rlcore.pipeline.hardware_stage", "probe the devices and decide where to train (out/hardware.json)"),
    "train": ("rlcore.pipeline.train_stage", "train a policy and log the run to MLflow (models/policy.pt)"),
    "evaluate": (
        "rlcore.pipeline.evaluate_stage",
        "held-out evaluation beside the classical controller (out/eval.json)",
    ),
    "export": ("rlcore.pipeline.export_stage", "ONNX export, parity, the torch-free controller (models/policy.onnx)"),
    "report": ("rlcore.bench.report_stage", "benchmarks and the run's report (out/report/report.md)"),
    "tune": ("rlcore.tune.stage", "Optuna tuning: one worker; start several to share a study"),
}


@dataclass(frozen=True)
class StageCommand:
    """One stage as a command: its name (a key of STAGES, which holds its help line), its code, its
    own options beyond --params and --set, and the MLflow lock it takes. `python stages/X.py` and
    `rlcore X` both run it."""

    name: str
    run: Callable[[argparse.Namespace, Params], Any]
    options: Callable[[argparse.ArgumentParser], None] | None = None
    logs_to_mlflow: str = ""

    @property
    def help(self) -> str:
        return STAGES[self.name][1]

    def parser(self, description: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
        parser = stage_parser(description or self.help)
        parser.prog = prog or f"rlcore {self.name}"
        if self.options:
            self.options(parser)
        return parser

    def main(self, argv: list[str] | None = None, description: str | None = None, prog: str | None = None) -> None:
        """Parse the command line and run the stage behind the one-line error boundary."""
        run_stage(self.run, self.parser(description, prog).parse_args(argv), logs_to_mlflow=self.logs_to_mlflow)
