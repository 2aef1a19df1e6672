"""Params validation: every bad input stops with one line naming the key, value and rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlcore.config.schema import ConfigError, Params
from rlcore.pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_committed_params_are_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    # every section of the schema is spelled out in params.yaml, so users see every knob
    assert set(committed) == set(Params.model_fields)
    assert params.env.success_radius == 0.02


def test_overrides_with_dotted_keys(tmp_path):
    params = load_params(ROOT / "params.yaml", ["seed=3", "env.success_radius=0.03", "robot.ee_link=null"])
    assert params.seed == 3
    assert params.env.success_radius == pytest.approx(0.03)
    assert params.robot.ee_link is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["env.sucess_radius=0.1"], "unknown key 'env.sucess_radius'"),
        (["targets.n=abc"], "targets.n = 'abc'"),
        (["env.success_radius=-1"], "env.success_radius = -1"),
        (["env.backend=mujoco"], "env.backend = 'mujoco'"),
        (["env.backend=bullet"], "env.backend: 'bullet' is now 'physics'"),
        (["env.backend=batched"], "env.backend: 'batched' is now 'twin'"),
        (["seed=1.5"], "seed = 1.5"),
        (["env.control_hz=7"], "multiple of control_hz"),
        (["env=3"], "env = 3"),
        (["seed"], "expected KEY=VALUE"),
        (["train.algo=sb3", "env.backend=twin"], "train.algo = 'sb3' needs env.backend = 'physics'"),
    ],
)
def test_bad_values_name_key_and_value(overrides, expected):
    from rlcore.algos.registry import algorithm_for

    with pytest.raises(ConfigError) as err:
        algorithm_for(load_params(ROOT / "params.yaml", overrides))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_params(write(tmp_path, "seed: 1\nenv: {a: 1\n  b: [\nrobot: 2\n"))
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(write(tmp_path, "- 1\n- 2\n"))


def test_stage_fails_before_work_with_one_line(tmp_path):
    out = tmp_path / "targets.npz"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "stages" / "targets.py"),
            "--params",
            str(ROOT / "params.yaml"),
            "--set",
            f"targets.path={out}",
            "--set",
            "targets.levels=0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "targets.levels = 0" in errors[0] and "greater than or equal to 1" in errors[0]
    assert not out.exists()
