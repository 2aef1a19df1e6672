"""Optuna sweeps: memory-model pruning, OOM, resume, two workers on PostgreSQL, a killed worker,
and the MLflow parent/nested runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from rlcore.config.schema import Params
from rlcore.envs.task import obs_size
from rlcore.pipeline.params import load_params
from rlcore.pipeline.placement import Placement
from rlcore.policy.file import gaussian_bundle
from rlcore.policy.networks import ActorCritic, RunningNorm
from rlcore.tune.study import TuneOptions, run_worker
from tests.helpers import mini_checkout, start_stage

ROOT = Path(__file__).resolve().parents[1]
DECISION_JSON = {  # out/hardware.json's decision
    "policy_device": "cpu",
    "env_device": "cpu",
    "n_envs_physics": 2,
    "n_envs_twin": 64,
    "vram_limit_mb": "unknown",
    "reasons": [],
}
DECISION = Placement.from_dict(DECISION_JSON)
OBS = obs_size(6)
TINY = {
    "targets": {"n": 300},
    "env": {"backend": "twin"},
    "train": {"n_steps": 8, "actor_hidden": [16, 16], "critic_hidden": [16, 16], "epochs": 2},
    "tune": {
        "objective": "success_after_steps",
        "eval_episodes": 50,
        "heartbeat_interval": 1,
        "grace_period": 3,
        "pruner_startup_trials": 50,
        "space": {
            "train.minibatch_size": {"type": "pow2", "low": 6, "high": 8},
            "train.n_envs": {"type": "int", "low": 32, "high": 64, "step": 32},
            "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
        },
    },
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A pipeline checkout in miniature: params.yaml, data/targets.npz, out/hardware.json."""
    return mini_checkout(tmp_path_factory.mktemp("tune"), TINY, DECISION_JSON)


def options(root: Path, name: str, trials: int, storage: str | None = None, limit: float | None = None) -> TuneOptions:
    return TuneOptions(
        root=root,
        storage=storage or f"sqlite:///{root / 'optuna.db'}",
        study_name=name,
        trials=trials,
        steps_per_trial=1024,
        seeds=1,
        vram_limit_mb=limit,
        progress=False,
        poll_s=0.5,
    )


class FakeTrain:
    """Stands in for rlcore.pipeline.train.train: reports two updates, returns an untrained policy."""

    def __init__(self, error: BaseException | None = None):
        self.calls = 0
        self.error = error

    def __call__(self, params, res, targets, checkpoint_dir, on_start, on_iteration, progress=True):
        self.calls += 1
        if self.error is not None:
            raise self.error
        for i in (1, 2):
            on_iteration({"step": i * 512, "iteration": i, "success_rate": 0.1 * i, "fps": 1000.0})
        model = ActorCritic(OBS, 6, params.train.actor_hidden, params.train.critic_hidden)
        return {}, gaussian_bundle(model, RunningNorm(OBS), params.model_dump(), "rlcore", OBS, 6)


@pytest.fixture(autouse=True)
def _local_mlflow(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)


def test_infeasible_memory_is_pruned_before_training(workdir):
    params = load_params(workdir / "params.yaml")
    fake = FakeTrain()
    study = run_worker(params, options(workdir, "infeasible", 3, limit=0.5), DECISION, fake)
    trials = study.get_trials()
    assert len(trials) == 3 and fake.calls == 0
    for t in trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["prune_reason"].startswith("infeasible memory")
        assert t.system_attrs["constraints:vram_excess_mb"] > 0  # the excess, as an Optuna constraint


def test_a_precision_radius_is_the_objective(workdir):
    """tune.radius: the trial's value is held-out success within that radius (here 1 m, which an
    untrained policy meets almost everywhere, where it meets the 2 cm success radius nowhere)."""
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    data = load_params(workdir / "params.yaml").model_dump()
    data["tune"]["radius"] = 1.0
    study = run_worker(Params.model_validate(data), options(workdir, "radius", 1), DECISION, FakeTrain())
    [trial] = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value > 0.8
    tracking.setup(workdir)
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("rlcore").experiment_id], "tags.objective != ''")
    assert {r.data.tags["objective"] for r in runs} >= {"held-out within_1000mm (twin)"}


def test_simulated_oom_is_pruned_with_reason(workdir):
    params = load_params(workdir / "params.yaml")
    fake = FakeTrain(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    study = run_worker(params, options(workdir, "oom", 2, limit=1e6), DECISION, fake)
    assert fake.calls == 2
    for t in study.get_trials():
        assert t.state == TrialState.PRUNED and t.user_attrs["prune_reason"].startswith("out of memory")
        assert t.system_attrs["constraints:vram_excess_mb"] > 0


def test_resume_keeps_finished_trials_and_mlflow_nesting(workdir):
    params = load_params(workdir / "params.yaml")
    first = run_worker(params, options(workdir, "resume", 2), DECISION, FakeTrain())
    before = {t.number: (t.params, t.value) for t in first.get_trials()}
    second = run_worker(params, options(workdir, "resume", 4), DECISION, FakeTrain())
    trials = second.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.number: (t.params, t.value) for t in trials if t.number in before} == before
    # MLflow: one parent run for the study, one nested run per trial with the pipeline's names
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    tracking.setup(workdir)
    client = MlflowClient()
    parent_id = second.user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.tags["dvc_stage"] == "tune"
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4
    for child in children:
        assert child.data.tags["trial_state"] == "COMPLETE"
        assert "train.learning_rate" in child.data.params and "env.success_radius" in child.data.params
        assert "success_rate" in child.data.metrics and "heldout_success_rate" in child.data.metrics


def test_waiting_retry_is_run_not_waited_for(workdir):
    """A killed worker's trial comes back WAITING (a retry). A worker that finds the rest of the
    study finished must run it, not wait for someone else to."""
    params = load_params(workdir / "params.yaml")
    study = run_worker(params, options(workdir, "waiting", 1), DECISION, FakeTrain())
    retry = {"log2:train.minibatch_size": 7, "train.n_envs": 32, "train.learning_rate": 5e-4}
    study.enqueue_trial(retry)  # stands in for RetryHeartbeatStaleTrialCallback's copy
    opts = options(workdir, "waiting", 2)
    opts.timeout_s = 60  # the old loop slept here until the timeout
    trials = run_worker(params, opts, DECISION, FakeTrain()).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[1].params == retry


def test_real_objective_with_median_pruning_on_sqlite(workdir):
    """The real objective (rlcore training, held-out evaluation in the twin) with the median
    pruner active. Two easy trials (a 50 cm success radius) run first; the two hard ones after
    them (1 mm) report far below their median at the same progress and are pruned."""
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking

    data = load_params(workdir / "params.yaml").model_dump()
    data["tune"].update(
        pruner_startup_trials=2,
        pruner_warmup_percent=0,
        space={"env.success_radius": {"type": "categorical", "choices": [0.001, 0.5]}},
    )
    params = Params.model_validate(data)
    opts = options(workdir, "median", 4)
    opts.steps_per_trial = 64 * 8 * 24  # 24 updates of 64 envs: episodes end at updates 8, 15 and 23
    study = optuna.create_study(storage=opts.storage, study_name="median", direction="maximize")
    for radius in (0.5, 0.5, 0.001, 0.001):
        study.enqueue_trial({"env.success_radius": radius})
    trials = run_worker(params, opts, DECISION, None).get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2, states
    assert all(0.5 < t.value <= 1.0 for t in trials[:2])  # real held-out success in the twin
    assert all(t.user_attrs["prune_reason"].startswith("median pruner") for t in trials[2:])
    tracking.setup(workdir)
    client = MlflowClient()
    parent = (
        study.user_attrs.get("mlflow_parent_run_id")
        or optuna.load_study(study_name="median", storage=opts.storage).user_attrs["mlflow_parent_run_id"]
    )
    experiment = client.get_experiment_by_name("rlcore").experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    logged = sorted((r.data.params["env.success_radius"], r.data.tags["trial_state"]) for r in children)
    assert logged == [("0.001", "PRUNED")] * 2 + [("0.5", "COMPLETE")] * 2


class TimedFakeTrain(FakeTrain):
    """Reports updates of 512 steps taking 10 ms each (51,200 steps/s), one of them 1 s (a slow
    spell), until total_steps; records the total_steps of every call."""

    def __init__(self):
        super().__init__()
        self.totals: list[int] = []

    def __call__(self, params, res, targets, checkpoint_dir, on_start, on_iteration, progress=True):
        self.calls += 1
        self.totals.append(params.train.total_steps)
        wall, step = 0.0, 0
        while step < params.train.total_steps:
            step += 512
            wall += 1.0 if step == 512 * 4 else 0.01
            on_iteration({"step": step, "iteration": step // 512, "wall_s": wall, "success_rate": 0.5, "fps": 0.0})
        model = ActorCritic(OBS, 6, params.train.actor_hidden, params.train.critic_hidden)
        return {}, gaussian_bundle(model, RunningNorm(OBS), params.model_dump(), "rlcore", OBS, 6)


def test_budget_objective_times_throughput_once_and_trains_that_many_steps(workdir):
    """success_at_budget: a probe measures steps/s (the median per-update rate, so one slow
    update does not move it), the budget becomes whole updates, and the trial trains that many."""
    data = load_params(workdir / "params.yaml").model_dump()
    data["tune"]["space"] = {"train.n_envs": {"type": "categorical", "choices": [64]}}
    data["train"]["n_steps"] = 8  # 64 envs x 8 steps = the fake's 512 steps per update
    params = Params.model_validate(data)
    opts = options(workdir, "budget", 1)
    opts.objective, opts.budget_s, opts.probe_s = "success_at_budget", 2.0, 0.05
    fake = TimedFakeTrain()
    (trial,) = run_worker(params, opts, DECISION, fake).get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["steps_per_s"] == pytest.approx(51_200, rel=1e-6)
    assert trial.user_attrs["steps"] == 2.0 * 51_200 == 102_400  # 200 updates of 512
    assert fake.totals[1:] == [102_400]  # the probe, then one training run of the budget
    assert fake.totals[0] > 10**9  # the probe is stopped by the callback, not by total_steps


def test_real_budget_objective_trains_its_measured_steps(workdir):
    """The real objective under success_at_budget: rlcore training probed, then trained for the
    budget's steps, scored in the twin; the step count reaches MLflow and the promote line."""
    from mlflow.tracking import MlflowClient

    from rlcore.tracking import runs as tracking
    from rlcore.tune.study import summarise

    params = load_params(workdir / "params.yaml")
    opts = options(workdir, "real-budget", 1)
    opts.objective, opts.budget_s, opts.probe_s = "success_at_budget", 1.5, 0.3
    study = run_worker(params, opts, DECISION, None)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and 0.0 <= trial.value <= 1.0
    per_update = 8 * trial.params["train.n_envs"]
    assert trial.user_attrs["steps"] % per_update == 0
    assert trial.user_attrs["steps"] == pytest.approx(1.5 * trial.user_attrs["steps_per_s"], abs=per_update)
    summary = summarise(study, workdir / "out" / "tune" / "real-budget", params.tune.space)
    assert f"-S train.total_steps={trial.user_attrs['steps']}" in summary["best"]["promote"]
    tracking.setup(workdir)
    (child,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("rlcore").experiment_id],
        f"tags.mlflow.parentRunId = '{study.user_attrs['mlflow_parent_run_id']}'",
    )
    assert child.data.params["tune.steps"] == str(trial.user_attrs["steps"])
    assert child.data.metrics["tune_probe_steps_per_s"] > 0


def test_tuner_trains_what_train_algo_names(workdir):
    """train.algo = sb3_dqn: trials train SB3's DQN (the train stage's code) over its own space;
    the budget objective, which times PPO updates, stops with one line."""
    from mlflow.tracking import MlflowClient

    from rlcore.config.schema import SearchDim
    from rlcore.pipeline.params import apply_overrides, validate
    from rlcore.pipeline.train import SetupError
    from rlcore.tracking import runs as tracking

    sets = ["env.backend=physics", "train.algo=sb3_dqn", "train.dqn.hidden=[16]", "train.dqn.learning_starts=256"]
    sets += ["train.log_every_steps=512"]
    params = validate(apply_overrides(load_params(workdir / "params.yaml").model_dump(), sets))
    space = {"train.dqn.action_scale": SearchDim(type="float", low=0.2, high=0.8)}
    params = params.model_copy(update={"tune": params.tune.model_copy(update={"space": space})})
    opts = options(workdir, "dqn", 1)
    study = run_worker(params, opts, DECISION, None)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and set(trial.params) == {"train.dqn.action_scale"}
    tracking.setup(workdir)
    (child,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("rlcore").experiment_id],
        f"tags.mlflow.parentRunId = '{study.user_attrs['mlflow_parent_run_id']}'",
    )
    assert child.data.tags["algo"] == "sb3_dqn" and "exploration_rate" in child.data.metrics
    assert child.data.params["train.dqn.action_scale"] == str(trial.params["train.dqn.action_scale"])
    opts = options(workdir, "dqn-budget", 1)
    opts.objective = "success_at_budget"
    with pytest.raises(SetupError, match="use --objective success_after_steps"):
        run_worker(params, opts, DECISION, None)


def test_layers_dimension_draws_width_and_depth_and_copies_to_the_critic():
    from rlcore.config.schema import SearchDim
    from rlcore.tune.space import promote_command, suggest, trial_values, with_values

    space = {
        "train.actor_hidden": SearchDim(type="layers", low=5, high=7, depth=[1, 3], also=["train.critic_hidden"]),
        "train.epochs": SearchDim(type="int", low=1, high=6),
    }
    trial = optuna.trial.FixedTrial({"log2:train.actor_hidden": 6, "depth:train.actor_hidden": 3, "train.epochs": 2})
    values = suggest(trial, space)
    assert values == {"train.actor_hidden": [64, 64, 64], "train.critic_hidden": [64, 64, 64], "train.epochs": 2}
    assert trial_values(trial.params, space) == values
    assert "-S train.actor_hidden=[64,64,64]" in promote_command(values)  # no spaces: one shell word
    params = with_values(load_params(ROOT / "params.yaml"), values)
    assert params.train.critic_hidden == [64, 64, 64] and params.train.epochs == 2
    with pytest.raises(ValueError, match="layers needs depth"):
        SearchDim(type="layers", low=5, high=7)


def worker(workdir: Path, storage: str, name: str, trials: int, steps: int) -> subprocess.Popen:
    args = ["--trials", str(trials), "--study-name", name, "--storage", storage, "--steps-per-trial", str(steps)]
    return start_stage("tune", workdir, *args, "--no-progress", stdout=subprocess.PIPE)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("RLCORE_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("RLCORE_TEST_POSTGRES is not set under CI (.ci/run starts PostgreSQL)")
        pytest.skip("set RLCORE_TEST_POSTGRES (see .ci/postgres) to run the PostgreSQL tests")
    return url


def fresh_study_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{int(time.time() * 1000)}"


def test_two_workers_on_postgres_finish_exact_total(workdir, postgres_url):
    name = fresh_study_name("two")
    # create the MLflow store and the study's experiment once, before parallel workers start
    run_worker(load_params(workdir / "params.yaml"), options(workdir, name, 0, postgres_url), DECISION, FakeTrain())
    procs = [worker(workdir, postgres_url, name, 6, 1024) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    study = optuna.load_study(study_name=name, storage=postgres_url)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    assert len({t.number for t in trials}) == len(trials)  # nothing duplicated
    assert all(t.state != TrialState.RUNNING for t in trials)  # nothing left behind
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.FAIL)


def test_killed_worker_trial_is_failed_and_retried(workdir, postgres_url):
    name = fresh_study_name("kill")
    run_worker(load_params(workdir / "params.yaml"), options(workdir, name, 0, postgres_url), DECISION, FakeTrain())
    victim = worker(workdir, postgres_url, name, 2, 150_000)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the victim is inside its first trial
        running = [
            t
            for t in optuna.load_study(study_name=name, storage=postgres_url).get_trials()
            if t.state == TrialState.RUNNING
        ]
        if running:
            break
        time.sleep(0.5)
    assert running, "the worker never started a trial"
    time.sleep(2)
    victim.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
    victim.wait()
    survivor = worker(workdir, postgres_url, name, 2, 1024)
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2
    [killed] = [t for t in failed if t.number == running[0].number]  # the killed trial was marked failed
    assert killed.params, "the killed trial had sampled its params"  # read after the kill, not while it started
    retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retried = [t for t in finished if retry_of(t) == killed.number]
    assert retried and retried[0].params == killed.params  # and retried with the same params
    # nothing left RUNNING in MLflow: the killed trial's run is closed KILLED, the study's parent FINISHED
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(killed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert client.get_run(study.user_attrs["mlflow_parent_run_id"]).info.status == "FINISHED"


def test_optuna_dashboard_reads_the_study_back_over_http(tmp_path):
    """`optuna-dashboard sqlite:///optuna.db` (the README's command) serves the tuner's study."""
    import json
    import sys
    import urllib.request

    from tests.helpers import free_port, start_http_process, stop_mlflow_server

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="reach", storage=storage, direction="maximize")
    for value in (0.2, 0.7):
        trial = study.ask()
        trial.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
        study.tell(trial, value)
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("optuna-dashboard")), storage, "--host", "127.0.0.1", "--port", str(port)]
    server = start_http_process(cmd, f"http://127.0.0.1:{port}/api/studies", tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as response:
            studies = json.loads(response.read())["study_summaries"]
        [summary] = [s for s in studies if s["study_name"] == "reach"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", timeout=30) as r:
            detail = json.loads(r.read())
    finally:
        stop_mlflow_server(server)
    assert [t["values"] for t in detail["trials"]] == [[0.2], [0.7]]
    assert detail["best_trials"][0]["params"][0]["name"] == "train.learning_rate"
