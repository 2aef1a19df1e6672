"""The train stage: resume after kill -9 with the same step count and MLflow run, the SB3
baseline exported in rlcore's format, and a learning test that really trains."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from rlcore.config.schema import Params
from tests.helpers import TINY_PARAMS, copy_repo, stage, start_stage


def curve_without_clock(root) -> list[dict[str, str]]:
    """out/train_curve.csv without its clock readings (wall_s, fps)."""
    import csv

    with (root / "out" / "train_curve.csv").open() as f:
        return [{k: v for k, v in row.items() if k not in ("wall_s", "fps")} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL after checkpoint k, run again: the same policy (bitwise), learning curve and MLflow
    history as an uninterrupted run with the same seed, one value per metric and step."""
    from mlflow.tracking import MlflowClient

    total = 100_000
    params = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "total_steps": total, "checkpoint_every": 1}}
    # one thread throughout: a run shares the cores with the other rlcore runs on the machine (other
    # tests' trainings), and a matmul on another thread count rounds differently
    params["hardware"] = {**TINY_PARAMS["hardware"], "cores": 1}
    root, whole = copy_repo(tmp_path / "killed", params, git=False), None
    (tmp_path / "whole").mkdir()
    whole = copy_repo(tmp_path / "whole", params, git=False)
    for repo in (root, whole):
        stage("targets", repo)
        stage("hardware", repo)
    stage("train", whole)
    proc = start_stage("train", root)
    ckpt = root / "checkpoints" / "last.pt"
    deadline = time.time() + 180
    state, sent = None, 0
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            try:
                state = torch.load(ckpt, weights_only=True)
                client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
                sent = len(client.get_metric_history(state["extra"]["run_id"], "fps"))
            except Exception:  # noqa: BLE001 - caught mid-rename or mid-write: read again
                state = None
            if state and sent >= 2:  # the killed run has logged updates, some past its checkpoint
                break
        time.sleep(0.2)
    assert state is not None and sent >= 2 and proc.poll() is None, "no checkpoint and metrics before the run ended"
    proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
    proc.wait()
    killed = torch.load(ckpt, weights_only=True)  # the last checkpoint written before the kill
    assert killed["env"] is not None  # the batched twin's episodes are in it
    run_id = killed["extra"]["run_id"]
    out = stage("train", root).stdout
    assert f"resumed from {ckpt}" in out and f"at step {killed['global_step']:,}" in out
    result = json.loads((root / "out" / "train.json").read_text())
    assert result["run_id"] == run_id and result["steps"] >= total
    assert not ckpt.exists()  # a finished run removes its checkpoint, so a forced re-run starts fresh

    # the same policy, bit for bit, and the same learning curve as the uninterrupted run
    got, want = (torch.load(r / "models" / "policy.pt", weights_only=True) for r in (root, whole))
    for part in ("model", "norm"):
        for key, tensor in want[part].items():
            assert torch.equal(got[part][key], tensor), f"{part}.{key}"
    assert curve_without_clock(root) == curve_without_clock(whole)

    # MLflow: the same run, finished, exactly one value per metric and step, the same values
    histories = {}
    for repo in (root, whole):
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        rid = json.loads((repo / "out" / "train.json").read_text())["run_id"]
        assert client.get_run(rid).info.status == "FINISHED"
        histories[repo] = {
            key: sorted((m.step, m.value) for m in client.get_metric_history(rid, key))
            for key in ("fps", "policy_loss", "success_rate", "curriculum_level")
        }
    updates = len(curve_without_clock(whole))
    for key, values in histories[root].items():
        steps = [step for step, _ in values]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step"
    assert len(histories[root]["fps"]) == updates
    for key in ("policy_loss", "success_rate", "curriculum_level"):
        assert histories[root][key] == histories[whole][key], key


def test_sb3_baseline_exports_the_same_policy(small_params, small_cache):
    from stable_baselines3.common.vec_env import VecNormalize

    from rlcore.algos.sb3.ppo import sb3_model, to_bundle
    from rlcore.envs.vec import make_vec_env
    from rlcore.policy.file import policy_from_bundle

    params = small_params.model_copy(
        update={
            "train": small_params.train.model_copy(
                update={"n_steps": 32, "total_steps": 128, "actor_hidden": [32, 32], "critic_hidden": [16]}
            )
        }
    )
    venv, _ = make_vec_env(params, small_cache, 2, kind="dummy")
    venv = VecNormalize(venv, norm_reward=False, clip_obs=10.0)
    model = sb3_model(params, venv)
    model.learn(128)
    ours = policy_from_bundle(to_bundle(model, venv, params))
    obs = venv.get_original_obs()
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    mine = ours(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    assert np.allclose(np.clip(theirs, -1, 1), mine, atol=1e-5)
    venv.close()


def test_sb3_baseline_stage_logs_under_rlcore_names(tmp_path):
    """`train.algo=sb3` runs the train stage end to end on PyBullet: its vec env measured and
    named, metrics under rlcore's names, a policy that the evaluate stage reads."""
    root = copy_repo(tmp_path, TINY_PARAMS, git=False)
    stage("targets", root)
    stage("hardware", root)
    sets = ["env.backend=physics", "train.algo=sb3", "train.n_envs=4", "train.total_steps=2048"]
    out = stage("train", root, *[arg for s in sets for arg in ("--set", s)]).stdout
    assert "sb3 vec env: " in out and "measured faster for 4 envs here" in out
    result = json.loads((root / "out" / "train.json").read_text())
    assert (result["algo"], result["backend"], result["steps"]) == ("sb3", "physics", 2048)
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    tracking.setup(root)
    run = MlflowClient().get_run(result["run_id"])
    assert run.data.tags["algo"] == "sb3" and run.info.status == "FINISHED"
    names = {"fps", "success_rate", "episode_return", "curriculum_level", "learning_rate", "policy_loss"}
    names |= {"value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "rollout_s", "update_s"}
    assert names <= set(run.data.metrics), names - set(run.data.metrics)
    assert len(MlflowClient().get_metric_history(result["run_id"], "fps")) >= 20  # 32 updates of 64 steps
    # the held-out twin score it prints and records is the saved policy's on every held-out target
    from rlcore.envs.targets import TargetCache
    from rlcore.pipeline.evaluate import evaluate_batched
    from rlcore.pipeline.params import load_params
    from rlcore.policy.file import policy_from_bundle, read_bundle

    params = load_params(root / "params.yaml", sets)
    cache = TargetCache.load(root / params.targets.path, params)
    policy = policy_from_bundle(read_bundle(str(root / "models" / "policy.pt")))
    again = evaluate_batched(policy, params, cache, None, params.eval.seed)
    assert result["heldout_twin_episodes"] == int(cache.heldout.sum()) == again["episodes"]
    assert result["heldout_twin_success_rate"] == again["success_rate"]
    assert result["heldout_twin_final_distance_mm_median"] == pytest.approx(again["final_distance_mm_median"])
    assert f"held-out, in the twin: {again['success_rate']:.1%}" in out
    assert run.data.metrics["heldout_twin_success_rate"] == pytest.approx(again["success_rate"], abs=1e-4)
    evaluation = stage("evaluate", root, "--episodes", "2").stdout
    assert "sb3 policy" in evaluation


@pytest.mark.slow
def test_learning_on_easy_targets(tmp_path):
    """Really trains (batched twin, easy targets only) and checks held-out success in PyBullet."""
    params = {
        **TINY_PARAMS,
        "targets": {"n": 3000},
        "env": {"backend": "twin", "curriculum": {"start_level": 0, "max_level": 0}},
        "train": {
            "total_steps": 600_000,
            "n_envs": 256,
            "n_steps": 16,
            "actor_hidden": [64, 64],
            "critic_hidden": [64, 64],
        },
        "eval": {"episodes": 60, "gif_episodes": 0},
    }
    root = copy_repo(tmp_path, params, git=False)
    stage("targets", root)
    stage("hardware", root)
    stage("train", root)
    from rlcore.envs.targets import TargetCache
    from rlcore.pipeline.evaluate import evaluate
    from rlcore.policy.file import load_policy

    policy, bundle = load_policy(str(root / "models" / "policy.pt"))
    p = Params.model_validate(bundle["params"])
    cache = TargetCache.load(root / "data" / "targets.npz", p)
    cache.heldout &= cache.level == 0  # evaluate on held-out targets of the trained level
    metrics, _ = evaluate(policy, p, cache, 60)
    assert metrics["success_rate_5cm"] >= 0.8, metrics
    assert metrics["success_rate"] >= 0.6, metrics


def test_sizes_over_the_vram_limit_stop_or_shrink():
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.placement import Placement
    from rlcore.robots.chain import chain_of
    from rlcore.runtime.memory import estimate_memory

    decision = Placement("cuda:0", "cuda:0", 16, 65536, 100.0, [])
    params = Params.model_validate({"robot": {"ee_link": "flange"}})
    assert estimate_memory(params.train, chain_of(params.robot), 65536).total_mb > 100
    with pytest.raises(runs.SetupError, match=r"exceeds the VRAM limit 100 MB .*largest that fit: train.n_envs=\d+"):
        runs.resolve(params, decision)
    fitted, res = runs.resolve(
        params.model_copy(update={"train": params.train.model_copy(update={"auto_fit": True})}), decision
    )
    assert res.n_envs < 65536 and res.estimate_mb <= 100 and "auto_fit" in res.notes[0]
    assert fitted.train.n_envs == res.n_envs
    # the same sizes on the CPU: no VRAM limit applies
    _, res = runs.resolve(params, replace(decision, policy_device="cpu", env_device="cpu"))
    assert res.n_envs == 65536


def wait_for_first_metrics(root, proc, timeout_s: float = 300) -> None:
    """Until the training run in `root`'s store has its first metrics (sent every 2 s). Reads the
    SQLite file read-only: an MlflowClient would create and migrate the tables itself, racing the
    stage's own setup of the same new file (on a loaded machine neither finished)."""
    import sqlite3

    deadline = time.time() + timeout_s
    db = root / "mlflow.db"
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)) as con:
                    if con.execute("SELECT 1 FROM metrics WHERE key = 'fps' LIMIT 1").fetchone():
                        return
            except sqlite3.Error:  # no tables yet, or the stage is writing: ask again
                pass
        time.sleep(0.5)
    raise AssertionError("the train stage logged no metrics")


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child; Windows delivers Ctrl-C to consoles only")
def test_ctrl_c_keeps_a_checkpoint_and_marks_the_run(tmp_path):
    params = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "total_steps": 2_000_000, "checkpoint_every": 1000}}
    root = copy_repo(tmp_path, params, git=False)
    stage("targets", root)
    stage("hardware", root)
    proc = start_stage("train", root, stdout=subprocess.PIPE)
    wait_for_first_metrics(root, proc)  # training under way, however long the start took
    time.sleep(2)  # a few updates in; no periodic checkpoint yet (checkpoint_every=1000)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    state = torch.load(root / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] > 0
    from rlcore.tracking import runs as tracking

    # a client bound to this store: mlflow.set_tracking_uri (tracking.setup) would point the
    # worker's later tests at it
    assert tracking.client(root).get_run(state["extra"]["run_id"]).info.status == "KILLED"


def test_nan_after_a_checkpoint_keeps_it_and_fails_the_run(tmp_path, monkeypatch, capsys):
    """The train stage in-process; the 4th update's weights turn NaN (as a diverging run's do)."""
    import runpy
    import sys

    from mlflow.tracking import MlflowClient

    from rlcore.algos.ppo.algorithm import PPO

    params = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "checkpoint_every": 1}}
    root = copy_repo(tmp_path, params, git=False)
    stage("targets", root)
    stage("hardware", root)
    update, calls = PPO.update, []

    def diverging(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            with torch.no_grad():
                self.model.critic[0].weight.fill_(float("nan"))
        return update(self, *args, **kwargs)

    monkeypatch.setattr(PPO, "update", diverging)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["stages/train.py"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(root / "stages" / "train.py"), run_name="__main__")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "last good checkpoint" in err and "Traceback" not in err
    state = torch.load(root / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 3  # the last good update's checkpoint is kept
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    run = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(state["extra"]["run_id"])
    assert run.info.status == "FAILED"
