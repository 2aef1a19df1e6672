"""The params reference of the docs site: every key of the schema with its type and default (from
rlcore.config.schema, so they cannot drift) and its meaning (the comment beside the key in
params.yaml, which tests/test_docs.py requires for every key)."""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rlcore.config.schema import Params

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<rest>.*)$")


def yaml_comments(path: Path) -> dict[str, str]:
    """The comment beside each key of a params file, with the comment lines under it that sit
    in the same column (a continued comment), by dotted key."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last: str | None = None
    column = -1
    for line in path.read_text(encoding="utf-8").splitlines():
        match = KEY.match(line)
        if match:
            indent = len(match["indent"])
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, match["key"])]
            last = ".".join(k for _, k in stack)
            rest = match["rest"]
            column = line.find("#") if "#" in rest else -1
            comments[last] = rest.split("#", 1)[1].strip() if "#" in rest else ""
        elif last is not None and line.strip().startswith("#") and line.find("#") == column > 0:
            comments[last] += " " + line.strip()[1:].strip()
        else:
            last = None
    return comments


def _type_name(annotation: Any) -> str:
    """A type as a reader writes it: `int`, `list[float] | null`, `'twin' | 'physics'`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, dict, tuple):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def rows(model: BaseModel | None = None, prefix: str = "") -> list[dict[str, str]]:
    """One row per leaf key of the default params: key, type, default; sections recurse."""
    model = model if model is not None else Params()
    out: list[dict[str, str]] = []
    for name, field in type(model).model_fields.items():
        key, value = f"{prefix}{name}", getattr(model, name)
        if isinstance(value, BaseModel):
            out += rows(value, f"{key}.")
            continue
        if isinstance(value, dict):
            value = {k: v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v for k, v in value.items()}
        default = value if isinstance(value, str) else json.dumps(value)
        if len(default) > 60:
            default = "(see params.yaml)"
        out.append({"key": key, "type": _type_name(field.annotation), "default": default})
    return out


def markdown(params_yaml: Path) -> str:
    """The params reference page."""
    comments = yaml_comments(params_yaml)
    lines = [
        "# Params reference",
        "",
        "Every key of `params.yaml`, generated from the schema (`rlcore/config/schema.py`: type and",
        "default) and the comments in `params.yaml` (meaning) each time the site is built. Override any",
        "key with `--set KEY=VALUE`, `dvc exp run -S KEY=VALUE`, or a partial params file",
        "([Params and overrides](../guide/params.md)).",
    ]
    section = None
    for row in rows():
        top = row["key"].split(".")[0] if "." in row["key"] else "top level"
        if top != section:
            section = top
            lines += ["", f"## {section}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        meaning = comments.get(row["key"], "").replace("|", "\\|")
        cells = [f"`{row['key']}`", row["type"].replace("|", "\\|"), f"`{row['default']}`", meaning]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
