"""Adding an algorithm is one class behind the registry: a toy one (a random policy) registered
here goes through the train stage, the evaluate stage and a tuning trial with no other change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from rlcore.algos import registry
from rlcore.algos.base import Memory, Resolved, TrainResult, TrainSummary
from rlcore.config.schema import ConfigError, Params
from rlcore.envs.targets import TargetCache
from rlcore.envs.task import obs_size
from rlcore.pipeline.params import load_params
from rlcore.pipeline.placement import Placement
from rlcore.policy.file import gaussian_bundle
from rlcore.policy.networks import ActorCritic
from rlcore.robots.chain import read_chain
from tests.helpers import ROOT, mini_checkout

DECISION = {"policy_device": "cpu", "env_device": "cpu", "n_envs_physics": 2, "n_envs_twin": 32, "reasons": []}
TINY = {
    "targets": {"n": 300},
    "eval": {"gif_episodes": 0},
    "train": {"n_steps": 4, "algo": "toy_random"},
    "tune": {
        "objective": "success_after_steps",
        "eval_episodes": 20,
        "space": {"train.n_steps": {"type": "categorical", "choices": [2, 4]}},
    },
}
UPDATES = 3


class RandomRun:
    """The toy's run handle (rlcore.algos.base.RunHandle)."""

    def __init__(self, model: ActorCritic, params: Params, dof: int) -> None:
        self.model, self.params, self.dof = model, params, dof
        self.extra: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self.tags = {"toy": "random weights, no learning"}
        self.finish_requested = False
        self.stop_requested = False

    def policy(self) -> dict[str, Any]:
        obs = obs_size(self.dof)
        return gaussian_bundle(self.model, None, self.params.model_dump(), "toy_random", obs, self.dof)


class RandomPolicy:
    """A policy of random weights, reported as UPDATES updates of n_envs x n_steps steps."""

    name = "toy_random"
    summary_line = "memory"
    resumes = False
    objectives = ("success_after_steps",)

    def check(self, params: Params) -> None:
        if params.env.backend != "twin":
            raise ConfigError("train.algo = 'toy_random' needs env.backend = 'twin'")

    def n_envs(self, params: Params, decided: int) -> int:
        return params.train.n_envs or decided

    def minibatch(self, params: Params, n_envs: int) -> int:
        return n_envs

    def memory(self, params: Params, n_envs: int) -> Memory:
        return Memory(0.0, on_device=False, note="toy_random: no memory to speak of")

    def train(
        self,
        params: Params,
        res: Resolved,
        targets: TargetCache,
        checkpoint_dir: Path | None,
        on_start: Any,
        on_iteration: Any,
        progress: bool = True,
    ) -> TrainResult:
        dof = read_chain(params.robot.urdf, params.robot.ee_link).dof
        torch.manual_seed(params.seed)
        t = params.train
        model = ActorCritic(obs_size(dof), dof, t.actor_hidden, t.critic_hidden, t.activation, t.init_log_std)
        run = RandomRun(model, params, dof)
        on_start(run, "toy_random starts fresh")
        for i in range(UPDATES):
            step = (i + 1) * res.n_envs * params.train.n_steps
            row = {"step": step, "wall_s": 0.01 * (i + 1), "fps": step / (0.01 * (i + 1)), "success_rate": 0.0}
            row |= {"episode_return": -1.0, "curriculum_level": 0.0, "iteration": i + 1}
            run.history.append(row)
            on_iteration(row)
        last = run.history[-1]
        summary = TrainSummary(
            steps=int(last["step"]), wall_s=last["wall_s"], fps=last["fps"], success_rate=0.0,
            episode_return=-1.0, curriculum_level=0, iterations=UPDATES, history=run.history,
        )  # fmt: skip
        return TrainResult(summary, run.policy())


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.setitem(registry.ALGORITHMS, "toy_random", RandomPolicy())
    monkeypatch.chdir(tmp_path)
    return mini_checkout(tmp_path, TINY, DECISION)


def test_unknown_algorithm_is_one_line():
    params = Params().model_copy(update={"train": Params().train.model_copy(update={"algo": "td3"})})
    with pytest.raises(ConfigError, match=r"train.algo = 'td3': not a registered algorithm \(registered: rlcore, sb3"):
        registry.algorithm_for(params)


def test_a_registered_toy_algorithm_trains_evaluates_and_tunes(workdir):
    from mlflow.tracking import MlflowClient

    from rlcore.pipeline.train_stage import train_stage
    from rlcore.tracking import runs as tracking
    from rlcore.tune.study import TuneOptions, run_worker

    params = load_params(workdir / "params.yaml")
    assert params.train.algo == "toy_random"
    # the train stage, in process (the registration lives in this process)
    result = train_stage(params, "models/policy.pt", "out/train.json", "out/train_curve.csv", "out/hardware.json")
    assert result["algo"] == "toy_random" and result["steps"] == UPDATES * 32 * 4
    assert json.loads((workdir / "out" / "train.json").read_text())["run_id"] == result["run_id"]
    run = tracking.client(workdir).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["algo"] == "toy_random" and run.data.tags["toy"] == "random weights, no learning"
    fps = tracking.client(workdir).get_metric_history(result["run_id"], "fps")
    assert sorted(m.step for m in fps) == [32 * 4, 2 * 32 * 4, 3 * 32 * 4]
    # the evaluate stage reads its policy file like any other
    out = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "evaluate.py")], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((workdir / "out" / "eval.json").read_text())
    assert metrics["episodes"] == 30 and 0.0 <= metrics["success_rate"] <= 1.0
    # a tuning trial trains it through the same registry
    opts = TuneOptions(
        root=workdir, storage=f"sqlite:///{workdir / 'optuna.db'}", study_name="toy", trials=1,
        steps_per_trial=256, seeds=1, vram_limit_mb=None, progress=False, poll_s=0.5,
    )  # fmt: skip
    study = run_worker(params, opts, Placement.from_dict(DECISION), None)
    (trial,) = study.get_trials()
    assert trial.state.name == "COMPLETE" and trial.params["train.n_steps"] in (2, 4)
    tracking.setup(workdir)
    (child,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("rlcore").experiment_id],
        f"tags.mlflow.parentRunId = '{study.user_attrs['mlflow_parent_run_id']}'",
    )
    assert child.data.tags["algo"] == "toy_random" and "heldout_success_rate" in child.data.metrics
