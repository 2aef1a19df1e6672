"""`train.compile`: torch.compile on the twin's physics step and the policy's forward pass.

`auto` compiles where the device's capabilities say torch.compile works (CUDA with Triton), `on`
compiles on any device (the CPU needs a C++ compiler), `off` never compiles. Each function is
compiled and tried once on real inputs when it is set up: under `auto` a failure keeps eager mode
and says why, under `on` it stops with a one-line error. Sampling stays outside the compiled
graphs, so a compiled run draws the same random numbers as an eager one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from rlcore.runtime.probes import capabilities

F = TypeVar("F", bound=Callable[..., Any])


class CompileError(RuntimeError):
    """train.compile=on, and torch.compile failed on this device."""


def wants_compile(setting: str, device: torch.device) -> bool:
    """Whether `train.compile` asks for compilation on this device."""
    if setting == "off":
        return False
    return setting == "on" or capabilities(device).compile


def compiled(fn: F, setting: str, device: torch.device, *example: Any, what: str = "function") -> tuple[F, str]:
    """`fn`, compiled when `setting` asks for it and a trial call on `example` works; with a note
    of what happened. Raises CompileError when `setting` is "on" and compilation fails."""
    if not wants_compile(setting, device):
        return fn, f"{what}: eager (train.compile={setting} on {device.type})"
    fast = torch.compile(fn, dynamic=False)
    try:
        fast(*example)
    except Exception as err:  # noqa: BLE001 - torch.compile raises many kinds; `auto` falls back on any
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if setting == "on":
            raise CompileError(
                f"train.compile=on: torch.compile of the {what} failed on {device.type}: {first_line} "
                "(set train.compile to auto or off)"
            ) from err
        return fn, f"{what}: eager (torch.compile failed: {first_line})"
    return fast, f"{what}: compiled"
