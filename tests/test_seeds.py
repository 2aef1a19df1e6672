"""`python -m rlcore.bench seeds` at tiny sizes: two configurations of two seeds each, the MLflow
parent and nested runs, the summaries, the time to the target, and the comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env, mini_checkout

ROOT = Path(__file__).resolve().parents[1]
DECISION = {"policy_device": "cpu", "env_device": "cpu", "n_envs_physics": 2, "n_envs_twin": 64, "reasons": []}
TINY = {
    "targets": {"n": 300},
    "env": {"backend": "twin", "success_radius": 1.0},  # config a: every episode succeeds
    "train": {"total_steps": 2048, "n_steps": 8, "actor_hidden": [16, 16], "critic_hidden": [16, 16], "epochs": 2},
    "eval": {"episodes": 6},
}


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> tuple[Path, str]:
    root = mini_checkout(tmp_path_factory.mktemp("seeds"), TINY, DECISION)
    cmd = [sys.executable, "-m", "rlcore.bench", "seeds", "--seeds", "2", "--score-every", "2", "--target", "0.5"]
    cmd += ["--set-b", "env.success_radius=0.001", "--no-progress"]  # config b: no episode succeeds
    env = {**child_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return root, out.stdout


def test_summaries_give_mean_min_max_intervals_and_time_to_target(result):
    root, stdout = result
    a = json.loads((root / "out/seeds/a.json").read_text())
    b = json.loads((root / "out/seeds/b.json").read_text())
    assert [s["seed"] for s in a["seeds"]] == [0, 1] and a["evaluated_in"] == "pybullet"
    rates = [s["heldout"]["success_rate"] for s in a["seeds"]]
    assert a["heldout"]["success_rate_mean"] == pytest.approx(sum(rates) / 2)
    assert a["heldout"]["success_rate_min"] == min(rates) and a["heldout"]["success_rate_max"] == max(rates)
    for s in a["seeds"]:
        assert s["heldout"]["episodes"] == 6
        ho = s["heldout"]
        assert ho["success_rate_ci_low"] <= ho["success_rate"] <= ho["success_rate_ci_high"]
        # scored in the twin every 2 updates of 64 envs x 8 steps; a 1 m radius is reached at the first score
        assert [p["step"] for p in s["curve"]] == [1024, 2048]
        assert s["steps_to_target"] == 1024 and 0 < s["time_to_target_s"] <= s["train_s"]
    assert a["reached"] == 2 and a["time_to_target_s"]["min"] <= a["time_to_target_s"]["max"]
    assert b["reached"] == 0 and b["time_to_target_s"]["mean"] is None
    assert all(s["time_to_target_s"] is None for s in b["seeds"])
    assert b["heldout"]["success_rate_max"] == 0.0
    assert "time to 50% (success_rate)" in stdout and "not reached" in stdout
    # precision: every radius of eval.radii per seed, pooled, and the reference controller's row beside them
    assert {"within_1mm_mean", "within_5mm_pooled_ci_low", "final_distance_mm_p99_mean"} <= set(a["heldout"])
    assert a["reference"]["reference_within_1mm"] == 1.0 and a["reference"]["reference_episodes"] == 6
    assert "reference (dls)" in stdout and "within 1mm" in stdout and "p50/p90/p99 mm" in stdout
    assert "compare: the held-out intervals do not overlap" in stdout and "a is better" in stdout
    assert (root / "out/seeds/a.png").stat().st_size > 1000
    # held-out success by training steps: the scores at the scored updates, over seeds
    for summary in (a, b):
        assert [r["step"] for r in summary["by_steps"]] == [1024, 2048]
        for k, row in enumerate(summary["by_steps"]):
            scores = [s["curve"][k]["twin_success_rate"] for s in summary["seeds"]]
            assert (row["min"], row["max"]) == (min(scores), max(scores))
            assert row["mean"] == pytest.approx(sum(scores) / len(scores))
    assert "held-out success in the twin by training steps (2 seeds" in stdout


def test_by_steps_takes_each_seeds_score_nearest_each_fraction_of_the_steps():
    from rlcore.bench.seed_report import by_steps, by_steps_text

    def curve(rates):
        return [{"step": 100 * (i + 1), "train_s": float(i + 1), "twin_success_rate": r} for i, r in enumerate(rates)]

    seeds = [{"curve": curve([0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0])}, {"curve": curve([0.0] * 10)}]
    rows = by_steps({"total_steps": 1000, "seeds": seeds})
    assert [r["step"] for r in rows] == [100, 200, 500, 700, 1000]  # a tie goes to the earlier score
    assert [r["mean"] for r in rows] == pytest.approx([0.05, 0.1, 0.4, 0.5, 0.5])
    assert [(r["min"], r["max"]) for r in rows][2] == (0.0, 0.8) and rows[3]["train_s"] == 7.0
    assert by_steps({"total_steps": 1000, "seeds": [{"curve": []}]}) == []
    text = by_steps_text({"total_steps": 1000, "seeds": seeds})
    assert text[-1].split() == ["1,000", "10", "50.0%", "[0.0%-100.0%]"]


def test_mlflow_holds_a_parent_per_configuration_and_a_nested_run_per_seed(result):
    from rlcore.tracking import runs as tracking

    root, _ = result
    client = tracking.client(root)
    experiment = client.get_experiment_by_name("rlcore")
    runs = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'seeds'")
    parents = {r.info.run_name: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert set(parents) == {"seeds-a", "seeds-b"}
    for label, parent in parents.items():
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == [f"{label}-seed0", f"{label}-seed1"]
        assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]
        rates = [r.data.metrics["heldout_success_rate"] for r in children]
        assert parent.data.metrics["heldout_success_rate_mean"] == pytest.approx(sum(rates) / 2, rel=1e-3)
        assert all(r.info.status == "FINISHED" for r in [parent, *children])
        history = client.get_metric_history(children[0].info.run_id, "heldout_twin_success_rate")
        assert [m.step for m in history] == [1024, 2048]
        assert "seeds/a.json" in {f.path for f in client.list_artifacts(parents["seeds-a"].info.run_id, "seeds")}
    tags = {r.info.run_name: r.data.tags["time_to_target"] for r in runs if "time_to_target" in r.data.tags}
    assert tags["seeds-b-seed0"] == "not reached" and tags["seeds-a-seed0"].endswith(" s")
