"""SB3's SAC and DQN in the pipeline: the action table, one policy file equal to SB3's
deterministic predict (in torch and in ONNX), the train and evaluate stages with their metrics,
bad combinations, and learning on easy targets."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecNormalize

from rlcore.algos.sb3.common import EpisodeTally, episode_metrics
from rlcore.algos.sb3.offpolicy import DiscreteActions, action_table, make_model, to_bundle
from rlcore.config.schema import ConfigError, Params
from rlcore.pipeline.params import load_params
from rlcore.policy.file import policy_from_bundle
from tests.helpers import ROOT, TINY_PARAMS, ready_workspace, stage


def test_single_joint_table_moves_one_joint_or_none():
    table = action_table(6, "single_joint", 0.4)
    assert table.shape == (13, 6)
    assert not table[0].any()  # row 0: no motion
    for j in range(6):
        plus, minus = np.zeros(6, np.float32), np.zeros(6, np.float32)
        plus[j], minus[j] = 0.4, -0.4
        assert np.array_equal(table[1 + 2 * j], plus) and np.array_equal(table[2 + 2 * j], minus)
    pairs = action_table(6, "joint_pairs", 0.4)
    assert pairs.shape == (13 + 4 * 15, 6) and np.array_equal(pairs[:13], table)
    assert np.allclose(pairs[13], [0.4, 0.4, 0, 0, 0, 0]) and np.allclose(pairs[16], [-0.4, -0.4, 0, 0, 0, 0])
    assert (np.count_nonzero(pairs[13:], axis=1) == 2).all()


def test_discrete_index_drives_the_documented_joint_command():
    class Recording:  # the smallest VecEnv surface DiscreteActions touches
        num_envs, observation_space, render_mode = 3, None, None
        action_space = None

        def step_async(self, actions):
            self.sent = actions

    inner = Recording()
    table = action_table(6, "single_joint", 0.5)
    wrapper = DiscreteActions(inner, table)
    wrapper.step_async(np.array([0, 5, 12]))
    assert wrapper.action_space.n == 13
    expected = np.zeros((3, 6))
    expected[1, 2], expected[2, 5] = 0.5, -0.5  # index 5 = joint 2 at +scale, 12 = joint 5 at -scale
    assert np.array_equal(inner.sent, expected)


def test_episode_tally_sums_returns_per_env_until_each_episode_ends():
    tally = EpisodeTally()  # the episode bookkeeping of both SB3 recorders
    no, yes = {"is_success": False}, {"is_success": True}
    assert tally.add(np.array([1.0, 2.0]), np.array([False, False]), [no, no]) == []
    assert tally.take() == []
    assert tally.add(np.array([1.0, 3.0]), np.array([True, False]), [yes, no]) == [True]
    assert tally.add(np.array([4.0, 1.0]), np.array([False, True]), [no, no]) == [False]
    ended = tally.take()
    assert episode_metrics(ended) == {"success_rate": 0.5, "episode_return": (2.0 + 6.0) / 2}
    assert tally.take() == []  # each take covers the episodes since the last
    tally.add(np.array([1.0, 1.0]), np.array([True, True]), [no, yes])
    assert episode_metrics(tally.take()) == {"success_rate": 0.5, "episode_return": (5.0 + 1.0) / 2}


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.algo=sb3_sac"], "train.algo = 'sb3_sac' needs env.backend = 'physics'"),
        (["train.algo=sb3_dqn"], "train.algo = 'sb3_dqn' needs env.backend = 'physics'"),
        (["train.algo=td3"], "train.algo"),
        (
            ["env.backend=physics", "train.dqn.actions=[[0.5,0,0]]"],
            "train.dqn.actions: row 0 has 3 values; each row needs 6",
        ),
        (["env.backend=physics", "train.dqn.actions=[[2,0,0,0,0,0]]"], "train.dqn.actions: row 0 leaves [-1, 1]"),
        (["train.sac.ent_coef=sometimes"], "train.sac.ent_coef"),
    ],
)
def test_bad_combinations_stop_with_one_line(sets, message):
    from rlcore.algos.registry import algorithm_for

    with pytest.raises(ConfigError) as err:
        algorithm_for(load_params(ROOT / "params.yaml", sets))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_format_1_policy_files_still_load(tmp_path):
    """A PPO policy file written before format 2 (no `kind`) loads and acts as the same actor."""
    from rlcore.policy.file import load_policy
    from rlcore.policy.networks import ActorCritic, RunningNorm

    model, norm = ActorCritic(27, 6, [16], [16]), RunningNorm(27)
    with torch.no_grad():
        model.actor[-1].weight.normal_(0, 1.0)
    norm.update(torch.randn(64, 27) * 3 + 1)
    old = {
        "format": 1,
        "algo": "rlcore",
        "obs_dim": 27,
        "act_dim": 6,
        "model": model.state_dict(),
        "norm": {k: v for k, v in norm.state_dict().items() if isinstance(v, torch.Tensor)},
        "params": Params().model_dump(),
    }
    old["params"]["train"].update(actor_hidden=[16], critic_hidden=[16])
    torch.save(old, tmp_path / "policy.pt")
    policy, bundle = load_policy(str(tmp_path / "policy.pt"))
    obs = torch.randn(32, 27) * 3
    assert policy.kind == "gaussian" and bundle["format"] == 1
    assert torch.allclose(policy(obs), model.actor(norm(obs)).clamp(-1, 1))
    from rlcore.policy.file import gaussian_bundle

    bundle = gaussian_bundle(model, norm, old["params"], "rlcore", 27, 6)
    before = policy_from_bundle(bundle)(obs)
    with torch.no_grad():  # training goes on after a copy is taken (bench algos): the copy keeps its values
        model.actor[-1].weight.add_(1.0)
        norm.mean.add_(1.0)
    assert torch.equal(policy_from_bundle(bundle)(obs), before)
    torch.save({"format": 7}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="not an rlcore policy file"):
        load_policy(str(tmp_path / "future.pt"))


def _small(small_params: Params, algo: str) -> Params:
    train = small_params.train.model_copy(
        update={
            "algo": algo,
            "sac": small_params.train.sac.model_copy(update={"hidden": [32, 32], "learning_starts": 64}),
            "dqn": small_params.train.dqn.model_copy(update={"hidden": [32, 16], "learning_starts": 64}),
        }
    )
    return small_params.model_copy(
        update={"env": small_params.env.model_copy(update={"backend": "physics"}), "train": train}
    )


@pytest.mark.parametrize("algo", ["sb3_sac", "sb3_dqn"])
def test_policy_file_acts_as_sb3_predict_deterministic(algo, small_params, small_cache, tmp_path):
    """The policy file (torch and ONNX) returns the joint command of SB3's predict(deterministic=True)."""
    from rlcore.envs.vec import make_vec_env
    from rlcore.policy import onnx_export as export
    from rlcore.robots.chain import read_chain

    params = _small(small_params, algo)
    venv, _ = make_vec_env(params, small_cache, 2, kind="dummy")
    table = action_table(6, "single_joint", params.train.dqn.action_scale)
    if algo == "sb3_dqn":
        venv = DiscreteActions(venv, table)
    venv = VecNormalize(venv, norm_reward=False, clip_obs=10.0)
    model = make_model(params, params.train.algo, venv)
    model.learn(400)  # past learning_starts: trained weights, moved normaliser statistics
    bundle = to_bundle(model, venv, params)
    assert bundle["format"] == 2 and bundle["kind"] == ("squashed" if algo == "sb3_sac" else "discrete")
    ours = policy_from_bundle(bundle)
    rng = np.random.default_rng(0)
    obs = venv.get_original_obs()[rng.integers(0, 2, 256)]
    obs = obs + rng.normal(0, 0.3, obs.shape).astype(np.float32)
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    theirs = table[theirs] if algo == "sb3_dqn" else theirs
    mine = ours(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    assert np.allclose(theirs, mine, atol=1e-5)
    if algo == "sb3_dqn":
        assert len({tuple(r) for r in mine}) > 1  # not one constant action: the comparison can fail
    onnx_path = tmp_path / f"{algo}.onnx"
    export.export_onnx(bundle, read_chain(params.robot.urdf, params.robot.ee_link), 30, onnx_path, "torchscript")
    assert export.parity(bundle, onnx_path, obs)["max_abs_action"] < 1e-4
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert (meta["rlcore.algo"], meta["rlcore.policy_kind"]) == (algo, bundle["kind"])
    venv.close()


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory):
    return ready_workspace(tmp_path_factory.mktemp("tiny"), TINY_PARAMS)


@pytest.mark.parametrize(
    "algo, own", [("sb3_sac", {"q_loss", "ent_coef", "policy_loss"}), ("sb3_dqn", {"q_loss", "exploration_rate"})]
)
def test_stage_trains_evaluates_and_logs_every_fixed_steps(algo, own, tiny_workspace):
    root = tiny_workspace
    section = "sac" if algo == "sb3_sac" else "dqn"
    sets = [
        "env.backend=physics",
        f"train.algo={algo}",
        "train.n_envs=4",
        "train.vec_env=dummy",
        "train.total_steps=3000",
        "train.log_every_steps=500",
        f"train.{section}.learning_starts=500",
        f"train.{section}.hidden=[32,32]",
    ]
    out = stage("train", root, *[a for s in sets for a in ("--set", s)]).stdout
    assert f"VRAM check skipped for {algo}" in out and "replay buffer" in out
    result = json.loads((root / "out" / "train.json").read_text())
    assert (result["algo"], result["steps"], result["n_envs"]) == (algo, 3000, 4)
    # a client of its own: mlflow.set_tracking_uri would point this worker's later tests here
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("rlcore").experiment_id], f"tags.algo = '{algo}'")
    assert own | {"success_rate", "fps", "learning_rate", "episode_return"} <= set(run.data.metrics)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "fps")]
    assert steps == list(range(500, 3001, 500))  # one row per log_every_steps, not per SB3 rollout
    assert run.data.tags["algo"] == algo
    evaluation = stage("evaluate", root, "--episodes", "2").stdout
    assert f"{algo} policy" in evaluation


LEARNING = {  # the defaults (docs/benchmarks.md: a 10-trial sweep each), for about a minute each
    "sb3_sac": ["train.total_steps=40000"],
    "sb3_dqn": ["train.total_steps=60000"],
}


@pytest.fixture(scope="module")
def easy_workspace(tmp_path_factory):
    params = {  # not TINY_PARAMS: its train.n_envs would override the algorithms' own
        "targets": {"n": 3000},
        "env": {"backend": "physics", "curriculum": {"start_level": 0, "max_level": 0}},
    }
    return ready_workspace(tmp_path_factory.mktemp("easy"), params)


@pytest.mark.slow
@pytest.mark.parametrize("algo", LEARNING)
def test_learning_on_easy_targets(algo, easy_workspace):
    """Really trains SAC or DQN (PyBullet, easy targets only) and checks held-out success at the
    PPO learning test's bar: >= 80% within 5 cm and >= 60% within 2 cm."""
    from rlcore.envs.targets import TargetCache
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.evaluate import evaluate

    params = load_params(easy_workspace / "params.yaml", [f"train.algo={algo}", *LEARNING[algo]])
    params, res = runs.resolve(params, runs.read_hardware(easy_workspace / "out" / "hardware.json"))
    runs.cpu_threads(params)
    targets = runs.load_targets(params, easy_workspace)
    _, bundle = runs.train(params, res, targets, None, lambda *_: None, lambda row: None, progress=False)
    cache = TargetCache.load(easy_workspace / "data" / "targets.npz", params)
    cache.heldout &= cache.level == 0  # held-out targets of the trained level
    metrics, _ = evaluate(policy_from_bundle(bundle), params, cache, 60)
    assert metrics["success_rate_5cm"] >= 0.8, metrics
    assert metrics["success_rate"] >= 0.6, metrics
