"""mkdocs hook: the reference pages generated at build time, so they cannot drift from the code:
reference/params.md from the schema and params.yaml's comments (rlcore.config.reference), and
reference/cli.md from the argument parsers of `rlcore` and its commands; and the home page and
changelog from README.md and CHANGELOG.md (one text each, on GitHub and on the site)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def _help(argv: list[str]) -> str:
    """What `rlcore ARGV --help` prints, at 100 columns."""
    import os

    from rlcore.cli import main

    os.environ["COLUMNS"] = "100"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue().rstrip()


def cli_markdown() -> str:
    """Every command's --help, as the terminal shows it."""
    from rlcore.bench.__main__ import COMMANDS
    from rlcore.cli import STAGES

    lines = [
        "# Command line",
        "",
        "Generated from the argument parsers each time the site is built. `rlcore X` and",
        "`python stages/X.py` take the same options (DVC runs the second); `python -m rlcore.bench X`",
        "is `rlcore bench X`.",
    ]
    commands = [["rlcore"], *[[s] for s in STAGES], ["params"], ["bench"], *[["bench", b] for b in COMMANDS]]
    for argv in commands:
        title = "rlcore" if argv == ["rlcore"] else "rlcore " + " ".join(argv)
        lines += ["", f"## `{title}`", "", "```text", _help([] if argv == ["rlcore"] else argv), "```"]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config) -> Files:
    from rlcore.config.reference import markdown

    pages = {
        "index.md": readme_as_index(),
        "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"),
        "reference/params.md": markdown(ROOT / "params.yaml"),
        "reference/cli.md": cli_markdown(),
    }
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    return files


def readme_as_index() -> str:
    """The README as the site's home page: its links made relative to docs/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = text.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    return text.replace("[licence](LICENSE) (MIT)", "licence: MIT (`LICENSE`)")
