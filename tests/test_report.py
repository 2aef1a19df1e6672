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
    names = report.figures(
        results, tmp_path / "no_curve.csv", tmp_path / "no_episodes.csv", tmp_path, "PyBullet", [0.001, 0.005]
    )
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


def test_the_precision_section_puts_the_policy_beside_the_reference(tmp_path):
    """eval.json's figures in a table, policy and reference columns, intervals on the rates; the
    episodes CSV drawn as the final-distance CDF."""
    evaluation = {
        "episodes": 4,
        "success_rate": 0.75,
        "success_rate_ci_low": 0.3,
        "success_rate_ci_high": 0.95,
        "within_1mm": 0.25,
        "within_1mm_ci_low": 0.05,
        "within_1mm_ci_high": 0.7,
        "final_distance_mm_median": 2.5,
        "reference_episodes": 4,
        "reference_within_1mm": 1.0,
        "reference_within_1mm_ci_low": 0.51,
        "reference_within_1mm_ci_high": 1.0,
        "reference_final_distance_mm_median": 0.002,
    }
    lines = report.precision_lines(evaluation)
    row = next(line for line in lines if line.startswith("| within_1mm |"))
    assert "25.0% (95% CI 5.0%-70.0%)" in row and "100.0% (95% CI 51.0%-100.0%)" in row
    assert any(line.startswith("| final_distance_mm_median | 2.5 | 0.002 |") for line in lines)
    csv = tmp_path / "episodes.csv"
    csv.write_text(
        "controller,episode,final_distance_mm\npolicy,0,2.5\npolicy,1,0.4\nreference,0,0.0\nreference,1,0.002\n"
    )
    names = report.figures({}, tmp_path / "no_curve.csv", csv, tmp_path, "PyBullet", [0.001, 0.005])
    assert names == ["eval_cdf.png"] and (tmp_path / "eval_cdf.png").stat().st_size > 1000
