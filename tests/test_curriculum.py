"""The curriculum sees each episode's real outcome, in the order episodes ended, for both
algorithms: one scripted success pattern drives the rlcore trainer and the SB3 baseline."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlcore.config.schema import Params
from rlcore.envs.targets import Curriculum
from rlcore.envs.vec import StepResult
from rlcore.runtime import probes as hw

N_ENVS, EPISODE = 16, 4  # every env ends an episode on the 4th step of each 4-step rollout
# successes per round of episodes: env i succeeds in round k iff i >= N_ENVS - SUCCESSES[k] (the
# last envs by index, so a trainer that reorders flags, successes first, is caught)
SUCCESSES = [0, 4, 8, 12, 16, 16, 16, 16]
# window 10 < 16 episodes per update, threshold 0.7: round 3 (12 of 16 = 75%) is the first whose
# rate reaches the threshold, so the level rises after update 4; after a rise the next 16
# results (round 4, started at the old level) are skipped, and round 5 (100%) raises it again
EXPECTED_LEVELS = [0, 0, 0, 1, 1, 2, 2, 2]


def scripted_params() -> Params:
    return Params.model_validate(
        {
            "env": {
                "backend": "physics",
                "curriculum": {"threshold": 0.7, "window": 10, "start_level": 0, "max_level": 2},
            },
            "train": {
                "n_envs": N_ENVS,
                "n_steps": EPISODE,
                "total_steps": N_ENVS * EPISODE * len(SUCCESSES),
                "actor_hidden": [8],
                "critic_hidden": [8],
                "epochs": 1,
                "minibatches": 1,
                "vec_env": "dummy",
                "lr_schedule": "constant",
            },
        }
    )


def succeeds(env_index: int, round_: int) -> bool:
    return env_index >= N_ENVS - SUCCESSES[min(round_, len(SUCCESSES) - 1)]


class ScriptedBatchedEnv:
    """The trainer's tensor env API with a known success pattern."""

    obs_dim, act_dim = 3, 2
    device = torch.device("cpu")
    workers = 0

    def __init__(self) -> None:
        self.num_envs = N_ENVS
        self.t = 0
        self.round = 0
        self.levels: list[int] = []

    def set_level(self, level: int) -> None:
        self.levels.append(level)

    def reset(self) -> torch.Tensor:
        return torch.zeros(N_ENVS, self.obs_dim)

    def step(self, actions: torch.Tensor) -> StepResult:
        self.t += 1
        obs = torch.full((N_ENVS, self.obs_dim), float(self.t % EPISODE))
        done = self.t % EPISODE == 0
        flags = torch.tensor([succeeds(i, self.round) for i in range(N_ENVS)]) & done
        if done:
            self.round += 1
        all_done = torch.full((N_ENVS,), done)
        reward = torch.zeros(N_ENVS)
        return StepResult(obs, reward, all_done, obs, flags, torch.zeros(N_ENVS), reward, done)


class ScriptedGymEnv(gym.Env):
    """The same pattern for SB3: env `index` reports is_success at its episodes' ends."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, index: int) -> None:
        self.index, self.t, self.round = index, 0, 0

    def set_level(self, level: int) -> None:
        pass

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        truncated = self.t == EPISODE
        info = {}
        if truncated:
            info["is_success"] = succeeds(self.index, self.round)
            self.round += 1
        return np.zeros(3, np.float32), 0.0, False, truncated, info


def levels_of(history: list[dict]) -> list[int]:
    return [int(row["curriculum_level"]) for row in history]


def record_batches(monkeypatch) -> list[list[bool]]:
    """Every batch of flags handed to Curriculum.update, as given."""
    seen: list[list[bool]] = []
    update = Curriculum.update

    def spy(self, successes):
        seen.append([bool(s) for s in np.atleast_1d(successes)])
        return update(self, successes)

    monkeypatch.setattr(Curriculum, "update", spy)
    return seen


# each update's batch: the episodes in the order they ended (same step: by env index)
EXPECTED_BATCHES = [[succeeds(i, k) for i in range(N_ENVS)] for k in range(len(SUCCESSES))]


def test_rlcore_trainer_levels_follow_real_outcomes(monkeypatch):
    from rlcore.algos.ppo.trainer import Trainer

    seen = record_batches(monkeypatch)
    params = scripted_params()
    env = ScriptedBatchedEnv()
    trainer = Trainer(params, env, torch.device("cpu"), hw.capabilities(torch.device("cpu")), None, n_levels=3)
    trainer.train(progress=False)
    assert seen == EXPECTED_BATCHES
    assert levels_of(trainer.history) == EXPECTED_LEVELS


def test_sb3_baseline_levels_follow_real_outcomes(monkeypatch):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlcore.algos.base import Resolved
    from rlcore.algos.sb3 import common
    from rlcore.algos.sb3.ppo import Sb3PPO

    seen = record_batches(monkeypatch)
    params = scripted_params()
    monkeypatch.setattr(
        common,
        "make_vec_env",
        lambda *a, **k: (DummyVecEnv([lambda i=i: ScriptedGymEnv(i) for i in range(N_ENVS)]), "scripted"),
    )

    class Targets:
        n_levels = 3

    res = Resolved("cpu", "cpu", N_ENVS, N_ENVS * EPISODE, None, 0.0, [])
    summary, _ = Sb3PPO().train(params, res, Targets(), None, lambda *a: None, lambda row: None, progress=False)
    assert seen == EXPECTED_BATCHES
    assert levels_of(summary["history"]) == EXPECTED_LEVELS


@pytest.mark.parametrize("batch", [16, 256, 1024])
def test_rate_is_over_whole_recent_batches_whatever_n_envs(batch):
    """A batch larger than the window counts whole: 75% successes among `batch` episodes that
    ended together, successes first (by env index), reach a 70% threshold."""
    curriculum = Curriculum(0, 2, threshold=0.7, window=100, in_flight=batch)
    flags = np.arange(batch) < int(0.75 * batch)
    assert curriculum.update(flags) is (batch >= 100)
    if batch >= 100:
        assert curriculum.level == 1 and curriculum.skip == batch


def test_small_batches_accumulate_to_the_window():
    curriculum = Curriculum(0, 2, threshold=0.7, window=100, in_flight=0)
    for _ in range(4):  # 4 x 20 = 80 episodes: fewer than the window
        assert not curriculum.update([True] * 20)
    assert curriculum.update([True] * 20)  # 100 episodes at 100%
    # older batches fall out once the newer ones hold the window
    curriculum = Curriculum(0, 2, threshold=0.7, window=40, in_flight=0)
    for flags in ([False] * 30, [True] * 30, [True] * 15):
        fired = curriculum.update(flags)
    assert fired and curriculum.level == 1  # the last 45 episodes are all successes
