"""One source of defaults: the schema's defaults are the shipped ones, params.yaml writes out the
same values, and a partial params file means the schema's defaults for the rest."""

from __future__ import annotations

from pathlib import Path

import yaml

from rlcore.config.schema import Params
from rlcore.pipeline.params import load_params
from tests.helpers import ROOT


def differences(path: Path) -> list[str]:
    """Keys whose value in the params file differs from the schema's default, or that the file lacks."""
    written = Params.model_validate(yaml.safe_load(path.read_text())).flat()
    default = Params().flat()
    return [f"{k}: file {written.get(k)!r}, schema {v!r}" for k, v in sorted(default.items()) if written.get(k) != v]


def sections_written(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text()))


def test_params_yaml_holds_the_schema_defaults():
    assert not differences(ROOT / "params.yaml")
    assert sections_written(ROOT / "params.yaml") == set(Params.model_fields)  # every section written out


def test_one_changed_default_in_params_yaml_is_caught(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    assert "  entropy_coef: 0.005" in text
    broken = tmp_path / "params.yaml"
    broken.write_text(text.replace("  entropy_coef: 0.005", "  entropy_coef: 0.01", 1))
    assert differences(broken) == ["train.entropy_coef: file 0.01, schema 0.005"]


def test_a_partial_params_file_takes_the_schema_defaults_for_the_rest(tmp_path):
    partial = tmp_path / "my.yaml"
    partial.write_text("train:\n  learning_rate: 0.002\n")
    params = load_params(partial)
    shipped = load_params(ROOT / "params.yaml")
    assert params.train.learning_rate == 0.002
    assert params.model_copy(update={"train": params.train.model_copy(update={"learning_rate": 1e-3})}) == shipped
