"""The batched on-device twin of the reach env: thousands of envs per step as torch tensors.

Same observation layout, action meaning, velocity limits, reward, success test, episode length
and targets as `rlcore.envs.bullet.ReachEnv`. Joint motion is kinematic: each substep replays
PyBullet's position-motor law v = clamp(kp (q_cmd - q) / dt_sub, +-vmax), q += v dt_sub, with the
same per-substep gain kp as the PyBullet env (see `substep_gain`); gravity and contact forces are not
modelled. In free space episodes have a fixed length and never terminate early, so all envs start
and end together: the step counter lives on the host, and a step needs no device-to-host
transfer. In a workcell (`env.workcell`) the arm's points are checked against the obstacles every
step (rlcore.robots.collision) and an env that touches one ends its episode alone.
"""

from __future__ import annotations

from typing import Any

import torch

from rlcore.config.schema import EnvConfig, RobotConfig
from rlcore.config.workcell import cell_of
from rlcore.envs.targets import TargetCache
from rlcore.envs.task import (
    StepResult,
    clearance_penalty,
    fine_offset,
    obs_size,
    reach_reward,
    substep_gain,
    velocity_fraction,
)
from rlcore.robots.chain import chain_of, home_pose
from rlcore.robots.kinematics import ForwardKinematics


class BatchedReachEnv:
    """n_envs reach tasks stepped together on one device (float32 throughout)."""

    def __init__(
        self,
        env: EnvConfig,
        robot: RobotConfig,
        targets: TargetCache | None,
        n_envs: int,
        device: torch.device | str = "cpu",
        mode: str = "train",
        seed: int = 0,
    ) -> None:
        """n_envs tasks of the `env` section on the `robot` section's arm, on `device`."""
        self.cfg = env
        self.num_envs = n_envs
        self.device = torch.device(device) if isinstance(device, str) else device
        self.chain = chain_of(robot)
        self.fk = ForwardKinematics(self.chain, self.device)
        self.dof = self.chain.dof
        self.obs_dim, self.act_dim = obs_size(self.dof), self.dof
        kw = {"device": self.device, "dtype": torch.float32}
        joints = self.chain.movable
        self.lower = torch.tensor([j.lower for j in joints], **kw)
        self.upper = torch.tensor([j.upper for j in joints], **kw)
        self.vmax = torch.tensor([j.velocity for j in joints], **kw)
        self.mid, self.half = (self.upper + self.lower) / 2, (self.upper - self.lower) / 2
        self.home = torch.tensor(home_pose(robot, self.chain), **kw)
        physics = self.cfg.train_physics if mode == "train" else self.cfg.eval_physics
        self.substeps = physics.sim_hz // self.cfg.control_hz
        self.dt = 1.0 / self.cfg.control_hz
        self.dt_sub = self.dt / self.substeps
        self.gain = substep_gain(self.cfg.tracking, self.substeps)
        # a device generator where torch has one (CPU, CUDA/ROCm), else the device's default RNG
        self.generator = None
        if self.device.type in ("cpu", "cuda"):
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        self.level = 0
        self.targets = targets
        if targets is not None:
            split = "train" if mode == "train" else "heldout"
            order = targets.indices(split)
            order = order[torch.from_numpy(targets.level[order]).argsort(stable=True).numpy()]
            self._pool_positions = torch.tensor(targets.positions[order], **kw)
            self._pool_joints = torch.tensor(targets.joints[order], **kw)
            levels = targets.level[order]
            self._level_end = [int((levels <= lvl).sum()) for lvl in range(targets.n_levels)]
        n = n_envs
        self.q = torch.zeros(n, self.dof, **kw)
        self.qd = torch.zeros(n, self.dof, **kw)
        self.q_cmd = torch.zeros(n, self.dof, **kw)
        self.prev_action = torch.zeros(n, self.dof, **kw)
        self.target = torch.zeros(n, 3, **kw)
        self.t = 0
        self.episode_return = torch.zeros(n, **kw)
        self.obs = torch.zeros(n, self.obs_dim, **kw)
        self._all = torch.ones(n, dtype=torch.bool, device=self.device)
        self._none = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._advance = self._physics  # compile() may swap in a compiled copy
        # a workcell: touching an obstacle ends that env's episode alone (per-env step counters)
        self.collision = None
        cell = cell_of(env)
        if cell:
            from rlcore.robots.collision import ArmCollision

            self.collision = ArmCollision(self.chain, cell, self.device)
            self.t_env = torch.zeros(n, dtype=torch.long, device=self.device)

    # -- API shared with the PyBullet adapter (rlcore.envs.vec.PhysicsVecEnv) -------------------
    def set_level(self, level: int) -> None:
        self.level = int(level)

    def reset(self, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes in every env; returns the observations. `targets` [num_envs, 3]
        gives each env its target (e.g. every held-out target once); by default they are sampled."""
        noise = self.cfg.reset_noise * (2 * self._rand(self.num_envs, self.dof) - 1)
        self.q = torch.minimum(torch.maximum(self.home + noise, self.lower), self.upper)
        self.q_cmd = self.q.clone()
        self.qd = torch.zeros_like(self.q)
        self.prev_action = torch.zeros_like(self.q)
        self.target = self._sample_targets(self.num_envs) if targets is None else targets.to(self.device)
        self.episode_return = torch.zeros_like(self.episode_return)
        self.t = 0
        if self.collision is not None:
            self.t_env = torch.zeros_like(self.t_env)
        self.obs = self._observe()[0]
        return self.obs

    def step(self, actions: torch.Tensor) -> StepResult:
        """Advance every env one control step; envs whose episode ended are reset."""
        if self.collision is not None:
            return self._step_in_workcell(actions)
        a, self.q, self.qd, self.q_cmd, obs, distance, reward = self._advance(
            actions, self.q, self.q_cmd, self.prev_action, self.target
        )
        self.prev_action = a
        self.episode_return = self.episode_return + reward
        self.t += 1
        if self.t < self.cfg.episode_steps:
            self.obs = obs
            return StepResult(obs, reward, self._none, obs, self._none, distance, self.episode_return, False)
        success = distance < self.cfg.success_radius
        returns = self.episode_return
        self.reset()
        return StepResult(self.obs, reward, self._all, obs, success, distance, returns, True)

    def _step_in_workcell(self, actions: torch.Tensor) -> StepResult:
        """`step` with obstacles: an env whose arm touches one ends its episode there (terminated,
        `env.reward.collision` off its reward) and starts the next alone; the others run on to the
        time limit. Knowing whether any ended takes one device-to-host read per step."""
        a, self.q, self.qd, self.q_cmd, obs, distance, reward = self._advance(
            actions, self.q, self.q_cmd, self.prev_action, self.target
        )
        shaping = self.cfg.reward.clearance > 0
        reach = self.cfg.reward.clearance_distance if shaping else 2 * self.collision.margin
        clearance = self.collision.clearance(self.q, reach)
        contact = clearance < self.collision.margin
        reward = reward - self.cfg.reward.collision * contact.float()
        if shaping:
            reward = reward - clearance_penalty(clearance, self.cfg, torch.relu)
        self.prev_action = a
        self.episode_return = self.episode_return + reward
        self.t_env = self.t_env + 1
        self.t += 1
        done = contact | (self.t_env >= self.cfg.episode_steps)
        success = done & ~contact & (distance < self.cfg.success_radius)
        returns = self.episode_return
        any_done = bool(done.any())
        if any_done:
            self._restart(done.nonzero()[:, 0], obs)
        else:
            self.obs = obs
        return StepResult(self.obs, reward, done, obs, success, distance, returns, any_done, contact)

    def _restart(self, ended: torch.Tensor, obs: torch.Tensor) -> None:
        """New episodes in the envs `ended` (indices; sampled start states and targets); the
        others keep `obs`, their observations after this step."""
        k = len(ended)
        noise = self.cfg.reset_noise * (2 * self._rand(k, self.dof) - 1)
        start = torch.minimum(torch.maximum(self.home + noise, self.lower), self.upper)
        self.q, self.q_cmd = self.q.index_copy(0, ended, start), self.q_cmd.index_copy(0, ended, start)
        zeros = torch.zeros_like(start)
        self.qd, self.prev_action = self.qd.index_copy(0, ended, zeros), self.prev_action.index_copy(0, ended, zeros)
        target = self._sample_targets(k)
        self.target = self.target.index_copy(0, ended, target)
        self.episode_return = self.episode_return.index_fill(0, ended, 0.0)
        self.t_env = self.t_env.index_fill(0, ended, 0)
        self.obs = obs.index_copy(0, ended, self._observation(start, zeros, target, zeros)[0])

    def compile(self, setting: str) -> str:
        """Compile the physics step per `train.compile` (rlcore.runtime.compiling); returns what happened."""
        from rlcore.runtime.compiling import compiled

        example = (torch.zeros_like(self.q), self.q, self.q_cmd, self.prev_action, self.target)
        self._advance, note = compiled(self._physics, setting, self.device, *example, what="twin step")
        return note

    def _physics(
        self,
        actions: torch.Tensor,
        q: torch.Tensor,
        q_cmd: torch.Tensor,
        prev_action: torch.Tensor,
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One control step as a pure function of the state: (clamped actions, q, qd, q_cmd,
        observations, distances, rewards). It touches no attribute it changes, so it can be compiled."""
        a = actions.clamp(-1.0, 1.0)
        fraction = velocity_fraction(a, self.cfg.action_power)
        q_cmd = torch.minimum(torch.maximum(q_cmd + fraction * (self.vmax * self.dt), self.lower), self.upper)
        v = torch.zeros_like(q)
        for _ in range(self.substeps):
            v = torch.minimum(torch.maximum(self.gain / self.dt_sub * (q_cmd - q), -self.vmax), self.vmax)
            q = q + v * self.dt_sub
        delta_sq = (a - prev_action).square().sum(-1)
        obs, distance = self._observation(q, v, target, a)
        reward = reach_reward(distance, delta_sq, self.cfg, self.dof, tanh=torch.tanh)
        return a, q, v, q_cmd, obs, distance, reward

    # -- checkpoints: a resumed run continues the same episodes ---------------------------------
    STATE = ("q", "qd", "q_cmd", "prev_action", "target", "episode_return", "obs")

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue these episodes exactly: joint state,
        commands, targets, returns, step counter, level and the env's RNG state."""
        state: dict[str, Any] = {k: getattr(self, k).cpu() for k in self.STATE}
        if self.collision is not None:
            state["t_env"] = self.t_env.cpu()
        state.update(t=self.t, level=self.level)
        state["rng"] = self.generator.get_state().cpu() if self.generator is not None else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.STATE:
            setattr(self, k, state[k].to(self.device))
        self.t, self.level = int(state["t"]), int(state["level"])
        if self.collision is not None:
            self.t_env = state["t_env"].to(self.device)
        if self.generator is not None and state.get("rng") is not None:
            self.generator.set_state(state["rng"].cpu())

    # -- internals -----------------------------------------------------------------------------
    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def _sample_targets(self, n: int) -> torch.Tensor:
        if self.targets is None:  # FK of random configurations: always reachable
            q = self.lower + (self.upper - self.lower) * self._rand(n, self.dof)
            return self.fk.ee_position(q)
        end = self._level_end[min(self.level, len(self._level_end) - 1)]
        idx = (self._rand(n) * end).long().clamp(max=end - 1)
        if self.cfg.target_noise <= 0:
            return self._pool_positions[idx]
        q = self._pool_joints[idx] + self.cfg.target_noise * (2 * self._rand(n, self.dof) - 1)
        return self.fk.ee_position(torch.minimum(torch.maximum(q, self.lower), self.upper))

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._observation(self.q, self.qd, self.target, self.prev_action)

    def _observation(
        self, q: torch.Tensor, qd: torch.Tensor, target: torch.Tensor, prev_action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(observations, distances to the target) of a state."""
        ee = self.fk.ee_position(q)
        delta = target - ee
        distance = delta.norm(dim=-1)
        fine = fine_offset(delta, distance.unsqueeze(-1), self.cfg.offset_scale, lambda d, s: d.clamp(min=s))
        obs = torch.cat([(q - self.mid) / self.half, qd / self.vmax, ee, target, delta, fine, prev_action], dim=-1)
        return obs, distance
