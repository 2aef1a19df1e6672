"""The face of the project: a short README that renders (its links and its two command blocks), the
docs site that builds strictly (links and anchors checked by mkdocs), a params reference with a
meaning for every key, the `rlcore` command, and the envs registered by `import rlcore`."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import markdown
import pytest
from markdown.extensions.toc import slugify

from tests.helpers import ROOT

README = ROOT / "README.md"
MARKERS = ["main-command", "test-command", "main-command-powershell", "test-command-powershell"]


def anchors_of(path: Path) -> set[str]:
    """The heading anchors of a markdown file, as mkdocs (and GitHub, for these headings) makes them."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slugify(h.replace("`", ""), "-") for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 10_000, f"README.md is {len(text.encode()):,} bytes"
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert links, "no links found"
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor:
            assert anchor in anchors_of(target), f"README links to {link}: no such heading"


def test_readme_command_blocks_render_as_one_line_each():
    text = README.read_text(encoding="utf-8")
    assert text.count("\n```") % 2 == 0, "an unclosed code fence"
    html = markdown.markdown(text, extensions=["fenced_code"])
    blocks = [b.strip() for b in re.findall(r"<pre><code>(.*?)</code></pre>", html, flags=re.S)]
    for marker in MARKERS:
        inner = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```\n<!-- /{marker} -->", text, flags=re.S)
        assert inner, f"the {marker} block is missing or not one fenced block between its markers"
        command = inner.group(1)
        assert "\n" not in command, f"{marker}: one line expected"
        assert command.replace("&", "&amp;").replace('"', "&quot;") in blocks, f"{marker} does not render as code"


def test_every_params_key_has_a_type_default_and_meaning():
    from rlcore.config.reference import markdown as params_markdown
    from rlcore.config.reference import rows, yaml_comments

    comments = yaml_comments(ROOT / "params.yaml")
    missing = [r["key"] for r in rows() if not comments.get(r["key"])]
    assert not missing, f"params keys without a description in params.yaml: {missing}"
    page = params_markdown(ROOT / "params.yaml")
    assert "| `env.eval_physics.sim_hz` | int | `240` |" in page  # a nested default, not the class's
    assert "| `hardware.cores` | 'auto' \\| int | `auto` |" in page
    assert page.count("\n| `") == len(rows())


def test_yaml_comments_follow_continued_lines_and_nesting(tmp_path):
    from rlcore.config.reference import yaml_comments

    path = tmp_path / "p.yaml"
    path.write_text("a:\n  b: 1        # first\n              # and more\n  c: 2\nd: x  # top\n")
    assert yaml_comments(path) == {"a": "", "a.b": "first and more", "a.c": "", "d": "top"}


def test_docs_site_builds_strictly(tmp_path):
    """mkdocs --strict: a broken link, a missing anchor or a page outside the nav fails the build."""
    pytest.importorskip("mkdocs", reason="the dev extra installs mkdocs-material")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    params_page = (tmp_path / "site" / "reference" / "params" / "index.html").read_text()
    assert "hardware.cores" in params_page
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "rlcore bench contention" in cli_page and "--physics-steps" in cli_page


def parsers() -> dict[str, argparse.ArgumentParser]:
    from rlcore.bench.__main__ import build_parser
    from rlcore.cli import STAGES, command

    found = {f"rlcore {name}": command(name).parser() for name in STAGES}
    bench = build_parser()
    sub = next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction))
    found.update({f"rlcore bench {name}": p for name, p in sub.choices.items()})
    return found


def test_every_option_has_help_text():
    lacking = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, parser in parsers().items()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert not lacking, f"options without help: {lacking}"


def run_rlcore(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / ("rlcore.exe" if sys.platform == "win32" else "rlcore")
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_rlcore_command(tmp_path):
    from rlcore.cli import command

    top = run_rlcore("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "evaluate", "bench", "params"))
    seeds = run_rlcore("bench", "seeds", "--help")
    assert seeds.returncode == 0 and "usage: rlcore bench seeds" in seeds.stdout and "--radius" in seeds.stdout
    evaluate = run_rlcore("evaluate", "--help")
    assert "ad-hoc" in evaluate.stdout and "eval.episodes" in evaluate.stdout  # the two ways, told apart
    params = run_rlcore("params", "--set", "train.learning_rate=0.0005", cwd=tmp_path)  # no params.yaml: defaults
    assert params.returncode == 0, params.stderr
    assert "learning_rate: 0.0005" in params.stdout and "cores: auto" in params.stdout
    bad = run_rlcore("params", "--set", "train.epochs=many", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "train.epochs" in bad.stderr
    bad_bench = run_rlcore("bench", "envs", "--set", "train.epochs=many", cwd=tmp_path)  # --set read here too
    assert bad_bench.returncode == 2 and bad_bench.stderr.count("\n") == 1 and "train.epochs" in bad_bench.stderr
    from rlcore.pipeline.cli import STAGES

    for name, (_, help_line) in STAGES.items():  # one help line per stage, the same in both places
        assert help_line in " ".join(top.stdout.split()), name
        assert command(name).help == help_line
    stage = subprocess.run(
        [sys.executable, "stages/train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert stage.returncode == 0 and "--curve" in stage.stdout  # DVC's way in takes the same options


@pytest.mark.parametrize("env_id", ["rlcore:rlcore/FanucReach-v0", "rlcore:rlcore/FanucReach-MuJoCo-v0"])
def test_gym_make_finds_the_envs_in_a_fresh_process(env_id):
    if "MuJoCo" not in env_id:
        pytest.importorskip("pybullet")
    code = f"import gymnasium as gym\nenv = gym.make({env_id!r})\nobs, _ = env.reset(seed=0)\nprint(obs.shape)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(30,)")


@pytest.mark.slow
def test_rl_zoo3_trains_on_the_env(tmp_path):
    """rl-zoo3's own `train` finds the env through `--gym-packages rlcore` and trains a few thousand steps."""
    pytest.importorskip("pybullet")
    hyperparams = tmp_path / "ppo.yml"
    hyperparams.write_text(
        "rlcore/FanucReach-v0:\n  n_envs: 2\n  n_timesteps: 2048\n  policy: MlpPolicy\n  n_steps: 256\n"
        "  batch_size: 64\n"
    )
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "rlcore/FanucReach-v0"]
    cmd += ["--gym-packages", "rlcore", "--conf-file", str(hyperparams), "-n", "2048", "--eval-freq", "-1"]
    cmd += ["-f", str(tmp_path / "logs"), "--seed", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "total_timesteps      | 2048" in result.stdout
    assert list((tmp_path / "logs" / "ppo").glob("rlcore-FanucReach-v0_*/rlcore-FanucReach-v0.zip"))
