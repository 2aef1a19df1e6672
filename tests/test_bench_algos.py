"""`python -m rlcore.bench algos`: every algorithm trains for the same time through the train
stage's code, its copies are scored, and the table, figure and report section agree."""

from __future__ import annotations

import json

import pytest

from rlcore.bench import algos
from rlcore.pipeline.params import apply_overrides, validate
from tests.helpers import TINY_PARAMS, copy_repo, ready_workspace, stage


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return ready_workspace(tmp_path_factory.mktemp("algos"), TINY_PARAMS)


def test_every_algorithm_gets_the_same_minutes_and_a_scored_curve(workspace):
    from rlcore.bench import report
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.params import load_params

    sets = ["train.n_envs=4", "train.sac.hidden=[16]", "train.dqn.hidden=[16]", "train.log_every_steps=100"]
    sets += ["train.sac.learning_starts=200", "train.dqn.learning_starts=200"]
    params = load_params(workspace / "params.yaml", sets)
    decision = runs.read_hardware(workspace / "out" / "hardware.json")
    targets = runs.load_targets(params, workspace)
    seconds = 4.0
    result = algos.run(params, targets, decision, seconds / 60, episodes=40, progress=False)
    assert list(result["rows"]) == list(algos.ROWS)
    for label, (seed_run,) in result["rows"].items():
        curve = seed_run["curve"]
        assert len(curve) >= 2, label  # copies on the time and step grids
        assert [c["train_s"] for c in curve] == sorted(c["train_s"] for c in curve)
        assert curve[-1]["train_s"] >= seconds, label  # trained to the limit ...
        assert curve[-2]["train_s"] < seconds, label  # ... and stopped at the first report past it
        assert all(0.0 <= c["success"] <= 1.0 for c in curve)
    finals = {label: r[0]["curve"][-1]["step"] for label, r in result["rows"].items()}
    assert result["equal_steps"] == min(finals.values())
    for row in result["table"]:
        assert row["steps_used"] <= result["equal_steps"] or row["steps_used"] == min(
            c["step"] for c in result["rows"][row["algo"]][0]["curve"]
        )
        assert row["interval"][0] <= row["success_at_time"] <= row["interval"][1]
    lines = algos.text(result)
    assert len(lines) == 2 + len(algos.ROWS) and all(label in "\n".join(lines) for label in algos.ROWS)
    out = workspace / "out" / "algos"
    algos.write(result, out)
    assert json.loads((out / "algos.json").read_text())["equal_steps"] == result["equal_steps"]
    section, image = report.algos_section(out, workspace / "out" / "report")
    assert image == "algos.png" and (workspace / "out" / "report" / "algos.png").stat().st_size > 10_000
    assert any("SB3 DQN" in line for line in section)


def test_report_stage_stops_at_once_when_the_comparison_is_missing(tmp_path):
    root = copy_repo(tmp_path, TINY_PARAMS, git=False)
    failed = stage("report", root, "--set", "report.algos=true", check=False)
    assert failed.returncode != 0
    assert "report.algos is true but" in failed.stderr and "python -m rlcore.bench algos" in failed.stderr
    assert not (root / "out" / "report").exists()  # nothing measured or written


def test_row_params_set_backend_and_algorithm_only():
    base = validate(apply_overrides(validate({}).model_dump(), ["train.learning_rate=0.002"]))
    p = algos.row_params(base, "SB3 SAC", 1)
    assert (p.env.backend, p.train.algo, p.seed, p.train.learning_rate) == ("physics", "sb3_sac", 1, 0.002)
    assert algos.row_params(base, "rlcore PPO, twin", 0).env.backend == "twin"
    from rlcore.algos.sb3.offpolicy import exploration_fraction

    dqn = algos.row_params(base, "SB3 DQN", 0)  # no step limit: epsilon falls over fixed steps
    fraction = base.train.dqn.exploration_fraction
    assert dqn.train.dqn.exploration_steps == round(fraction * algos.EXPLORATION_BASE_STEPS)
    assert exploration_fraction(dqn) * dqn.train.total_steps == pytest.approx(dqn.train.dqn.exploration_steps)
    assert exploration_fraction(base) == fraction  # exploration_steps unset: the fraction of total_steps
