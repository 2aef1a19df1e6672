"""The report runs the benchmarks `report.benchmarks` names, and its tables, figures and metrics
follow: a subset gives that subset's sections, [] the run's own report alone."""

from __future__ import annotations

import pytest

from rlcore.bench import report
from rlcore.bench.report_stage import measure
from rlcore.config.schema import ConfigError
from rlcore.pipeline.params import load_params
from tests.helpers import ROOT


def params_with(benchmarks: str):
    return load_params(ROOT / "params.yaml", [f"report.benchmarks={benchmarks}", "report.batched_n_envs=[64,128]"])


def test_a_subset_runs_only_its_benchmarks_and_reports_them(tmp_path):
    results = measure(params_with("[batched]"), ["cpu"])
    assert set(results) == {"batched"}
    assert [r["n_envs"] for r in results["batched"]["rows"]] == [64, 128]
    names = report.figures(results, tmp_path / "no_curve.csv", tmp_path / "no_episodes.csv", tmp_path, "PyBullet")
    assert names == ["batched_throughput.png"] and (tmp_path / names[0]).stat().st_size > 1000
    text = report.markdown(results, {}, {}, names, {"policy_device": "cpu", "env_device": "cpu"})
    assert "## Batched twin" in text and "Batched env: **cpu**" in text
    assert "Headline" not in text and "PPO update throughput" not in text and "No benchmarks ran" not in text
    metrics = report.bench_metrics(results)
    assert set(metrics) == {"fps_batched_best", "batched_best_n_envs"} and metrics["fps_batched_best"] > 0


def test_no_benchmarks_gives_the_runs_own_report():
    params = params_with("[]")
    assert measure(params, ["cpu"]) == {}
    train = {
        "run_id": "abc",
        "algo": "rlcore",
        "backend": "twin",
        "device": "cpu",
        "steps": 10,
        "wall_s": 1,
        "fps": 10,
    }
    text = report.markdown({}, train, {}, [], {})
    assert "`abc`" in text and "No benchmarks ran (`report.benchmarks: []`)" in text
    assert report.bench_metrics({}) == {}


def test_an_unknown_benchmark_names_the_key():
    with pytest.raises(ConfigError, match="report.benchmarks"):
        params_with("[env, speed]")
