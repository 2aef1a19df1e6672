"""One typed, validated schema for params.yaml: its sections and their defaults, which are the
shipped defaults (params.yaml holds the same values; tests/test_defaults.py checks it).

The schema knows values and ranges only; what needs the robot's URDF or the OS (the chain and its
end-effector link, robot.home's length, train.dqn.actions' width, hardware.mp_start_method) is
checked when params are loaded (rlcore.pipeline.params). Every error becomes a `ConfigError` whose
message is one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ConfigError(ValueError):
    """A params file or override that does not fit the schema."""


Width = Annotated[int, Field(ge=1, le=65_536)]  # units of a hidden layer
Layers = Annotated[list[Width], Field(min_length=1, max_length=16)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RobotConfig(Section):
    urdf: str = "fanuc_lrmate200id"
    ee_link: str | None = None  # default: the bundled robot's own, a tool frame, or the longest revolute chain's end
    home: list[FiniteFloat] | None = None  # joint angles (rad); default zero, or mid-range where zero is outside
    held: dict[str, FiniteFloat] = {}  # held joints (grippers, fingers) -> position (rad or m); default 0 in limits


class TargetsConfig(Section):
    path: str = "data/targets.npz"
    n: int = Field(20000, ge=100, le=5_000_000)
    seed: int = Field(0, ge=0)
    heldout_fraction: float = Field(0.1, gt=0.0, lt=0.9)
    levels: int = Field(3, ge=1, le=10)
    min_height: float = Field(0.05, ge=-1.0, le=2.0)  # flange z above the floor (m)
    min_radius: float = Field(0.15, ge=0.0, le=2.0)  # flange distance from the J1 axis (m)
    max_azimuth_deg: float = Field(120.0, gt=0.0, le=180.0)  # workcell: |atan2(y, x)| of targets


class PhysicsConfig(Section):
    sim_hz: int = Field(120, ge=30, le=2000)
    solver_iterations: int = Field(10, ge=1, le=500)


class RewardConfig(Section):
    distance: float = Field(1.0, ge=0.0)  # -w * d
    precision: float = Field(1.0, ge=0.0)  # +w * (1 - tanh(d / sigma))
    precision_sigma: float = Field(0.02, gt=0.0)
    fine: float = Field(1.0, ge=0.0)  # +w * (1 - tanh(d / fine_sigma)): the millimetre scale
    fine_sigma: float = Field(0.002, gt=0.0)
    action_rate: float = Field(0.01, ge=0.0)  # -w * |a - a_prev|^2 / dof
    collision: float = Field(20.0, ge=0.0)  # - w once, on the step the arm touches an obstacle (it ends the episode)
    clearance: float = Field(0.5, ge=0.0)  # - w max(0, 1 - c / clearance_distance), c: the arm's clearance
    clearance_distance: float = Field(0.03, gt=0.0, le=1.0)  # m: nearer an obstacle than this costs


class CurriculumConfig(Section):
    enabled: bool = True
    start_level: int = Field(0, ge=0)
    max_level: int = Field(2, ge=0)  # the max_difficulty cap
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    window: int = Field(100, ge=1)


class EnvConfig(Section):
    # twin: the batched on-device torch twin | physics: envs of the engine `physics` names, in workers
    backend: Literal["twin", "physics"] = "twin"
    physics: Literal["auto", "pybullet", "mujoco"] = "auto"  # auto: PyBullet where it imports, else MuJoCo
    control_hz: int = Field(30, ge=1, le=500)
    episode_steps: int = Field(60, ge=1, le=10_000)
    success_radius: float = Field(0.02, gt=0.0, le=1.0)
    reset_noise: float = Field(0.1, ge=0.0, le=3.2)  # rad, uniform around the home pose
    target_noise: float = Field(0.0, ge=0.0, le=0.5)  # rad of joint noise on cached targets
    tracking: float = Field(0.8, gt=0.0, lt=1.0)  # gap to the commanded position closed per step
    offset_scale: float = Field(0.02, gt=0.0, le=1.0)  # m: the fine offset observation is linear within it
    action_power: float = Field(1.5, ge=1.0, le=4.0)  # velocity fraction = sign(a) |a|^power: fine near 0
    train_physics: PhysicsConfig = PhysicsConfig(sim_hz=120, solver_iterations=10)
    eval_physics: PhysicsConfig = PhysicsConfig(sim_hz=240, solver_iterations=50)
    reward: RewardConfig = RewardConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    # obstacles (rlcore.config.workcell.cell_of resolves and checks it): None = free space |
    # a preset name | a YAML file | a list
    workcell: str | list[dict[str, Any]] | None = None

    @field_validator("backend", mode="before")
    @classmethod
    def _old_backend_names(cls, value: object) -> object:
        """The names before the engine got its own key: one line naming the new value."""
        renamed = {"bullet": "physics", "batched": "twin"}
        if isinstance(value, str) and value in renamed:
            raise ValueError(f"{value!r} is now {renamed[value]!r} (twin | physics; the engine itself is env.physics)")
        return value

    @model_validator(mode="after")
    def _rates_divide(self) -> EnvConfig:
        for name in ("train_physics", "eval_physics"):
            sim_hz = getattr(self, name).sim_hz
            if sim_hz % self.control_hz:
                raise ValueError(f"{name}.sim_hz = {sim_hz} must be a multiple of control_hz = {self.control_hz}")
        return self


class HardwareConfig(Section):
    device: str = "auto"  # auto, cpu, cuda, cuda:N, directml, directml:N, mps
    vram_limit_mb: float | None = Field(None, gt=0)
    vram_safety_fraction: float = Field(0.8, gt=0.0, le=1.0)
    n_envs_physics: int | None = Field(None, ge=1, le=256)  # None: placement.BULLET_ENVS (64)
    n_envs_twin: int | None = Field(None, ge=1, le=1 << 22)
    gpu_margin: float = Field(1.2, ge=1.0, le=10.0)  # a GPU must be this much faster to be chosen
    # PyBullet worker processes: auto = forkserver where the OS has it, else spawn (Windows)
    mp_start_method: Literal["auto", "forkserver", "spawn", "fork"] = "auto"
    # CPU cores a run may use: auto = every core this process may run on, shared evenly with the
    # other rlcore runs on the machine (rlcore.runtime.sharing); N = at most N of them
    cores: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"


class SacConfig(Section):
    """stable-baselines3 SAC (`train.algo: sb3_sac`); gamma comes from train.gamma."""

    n_envs: int = Field(16, ge=1, le=256)  # PyBullet envs, unless train.n_envs is set
    hidden: Layers = Field(default_factory=lambda: [128, 128])  # actor and both critics
    activation: Literal["elu", "tanh", "relu", "silu"] = "relu"
    learning_rate: float = Field(9e-3, gt=0.0, le=1.0)
    buffer_size: int = Field(1_000_000, ge=1000)
    learning_starts: int = Field(1000, ge=0)  # env steps of random actions before updates
    batch_size: int = Field(256, ge=8)
    tau: float = Field(0.005, gt=0.0, le=1.0)
    train_freq: int = Field(1, ge=1)  # vec-env steps between updates
    gradient_steps: int = Field(2, ge=1)  # updates each time
    ent_coef: str | float = "auto"  # "auto" (learned, as SB3) or a fixed coefficient


class DqnConfig(Section):
    """stable-baselines3 DQN (`train.algo: sb3_dqn`) over a table of joint-velocity commands."""

    # the action table (rlcore/algos/sb3/offpolicy.py): single_joint (one joint at +-action_scale, or none:
    # 1 + 2 x joints rows), joint_pairs (also two joints at once), or explicit rows, one value per joint
    actions: Literal["single_joint", "joint_pairs"] | list[list[float]] = "single_joint"
    action_scale: float = Field(0.25, gt=0.0, le=1.0)  # commanded speed, fraction of the URDF limit
    n_envs: int = Field(16, ge=1, le=256)
    hidden: Layers = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "tanh", "relu", "silu"] = "relu"
    learning_rate: float = Field(1.4e-3, gt=0.0, le=1.0)
    buffer_size: int = Field(1_000_000, ge=1000)
    learning_starts: int = Field(1000, ge=0)
    batch_size: int = Field(256, ge=8)
    tau: float = Field(1.0, gt=0.0, le=1.0)  # 1 = hard target updates
    target_update_interval: int = Field(2000, ge=1)  # env steps
    train_freq: int = Field(1, ge=1)
    gradient_steps: int = Field(2, ge=1)
    exploration_fraction: float = Field(0.45, gt=0.0, le=1.0)  # share of total_steps over which epsilon falls
    exploration_steps: int | None = Field(None, ge=1)  # env steps instead (over total_steps: all of them)
    exploration_initial_eps: float = Field(1.0, ge=0.0, le=1.0)
    exploration_final_eps: float = Field(0.05, ge=0.0, le=1.0)


class TrainConfig(Section):
    # a name in rlcore.algos.registry: rlcore (on-device PPO) | sb3 (SB3 PPO) | sb3_sac | sb3_dqn
    # (SB3 off-policy); the SB3 algorithms train on the physics engine's envs
    algo: str = "rlcore"
    total_steps: int = Field(4_505_600, ge=1)  # 1,100 updates of 256 x 16: 90 s to 4 min on 2-core CPUs
    n_envs: int | None = Field(None, ge=1, le=1 << 22)  # None: the hardware stage's choice
    n_steps: int = Field(16, ge=1, le=100_000)  # rollout length per env
    epochs: int = Field(5, ge=1, le=100)
    minibatches: int = Field(4, ge=1, le=4096)
    minibatch_size: int | None = Field(None, ge=8)  # overrides minibatches when set
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    lr_schedule: Literal["constant", "linear", "adaptive"] = "adaptive"  # adaptive: KL-driven
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    clip_range: float = Field(0.2, gt=0.0, le=1.0)
    clip_value: float | None = Field(None, gt=0.0)  # value clipping range; None = off
    value_coef: float = Field(1.0, ge=0.0)
    entropy_coef: float = Field(0.005, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    target_kl: float | None = Field(0.01, gt=0.0)  # adaptive lr aims here; else epochs stop past 1.5x
    actor_hidden: Layers = Field(default_factory=lambda: [128, 128])
    critic_hidden: Layers = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "tanh", "relu", "silu"] = "elu"
    init_log_std: float = Field(-0.5, ge=-5.0, le=2.0)
    obs_norm: bool = True
    vec_env: Literal["auto", "shared", "subproc", "dummy"] = "auto"  # physics backend only
    checkpoint_every: int = Field(20, ge=1)  # updates
    checkpoint_dir: str = "checkpoints"
    auto_fit: bool = False  # shrink n_envs / minibatch to fit the VRAM limit instead of stopping
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile the twin step and policy forward
    log_every_steps: int = Field(10_000, ge=1)  # off-policy algorithms: one metrics row per this many steps
    sac: SacConfig = SacConfig()
    dqn: DqnConfig = DqnConfig()

    @field_validator("sac")
    @classmethod
    def _ent_coef_is_auto_or_number(cls, value: SacConfig) -> SacConfig:
        coef = value.ent_coef
        if isinstance(coef, str) and coef != "auto" and not coef.startswith("auto_"):
            try:
                float(coef)
            except ValueError:
                raise ValueError(f"train.sac.ent_coef = {coef!r}: 'auto', 'auto_<init>' or a number") from None
        return value


class EvalConfig(Section):
    episodes: int | None = Field(None, ge=1, le=100_000)  # None: every held-out target once
    seed: int = Field(12345, ge=0)
    gif_episodes: int = Field(3, ge=0, le=50)
    # precision: the success radii (m) every controller is judged at, each rate with its interval
    radii: list[float] = Field(default_factory=lambda: [0.001, 0.005, 0.02], min_length=1, max_length=8)
    reference: Literal["dls", "none"] = "dls"  # the classical controller evaluated on the same episodes
    dls_damping: float = Field(0.02, ge=0.0, le=1.0)  # m: the reference's damped-least-squares damping
    workers: int | None = Field(None, ge=1, le=256)  # episode processes; None = every core

    @field_validator("radii")
    @classmethod
    def _radii_in_range(cls, radii: list[float]) -> list[float]:
        bad = [r for r in radii if not 0.0 < r <= 1.0]
        if bad:
            raise ValueError(f"radii are in m, each in (0, 1]: got {bad[0]}")
        return sorted(set(radii))


class ExportConfig(Section):
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"  # auto: dynamo on torch >= 2.9, else torchscript
    parity_observations: int = Field(10_000, ge=100, le=1_000_000)  # onnxruntime vs torch check
    controller_episodes: int = Field(200, ge=0, le=100_000)  # held-out PyBullet episodes driven by the controller
    register_min_success: float = Field(0.95, ge=0.0, le=1.0)  # register as rlcore-reach from this held-out success


Benchmark = Literal["env", "batched", "update", "ppo"]  # the report's benchmarks (rlcore.bench.report_stage.measure)


class ReportConfig(Section):
    # which benchmarks the report runs (all four by default; [] for a report of the run alone, in seconds)
    benchmarks: list[Benchmark] = Field(default_factory=lambda: list(get_args(Benchmark)))
    vec_n_envs: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])  # SB3 vec-env sweep
    batched_n_envs: list[int] = Field(default_factory=lambda: [256, 4096, 16384])
    ppo_n_envs: int = Field(64, ge=1, le=256)  # PyBullet envs for rlcore-vs-SB3
    ppo_steps: int = Field(8192, ge=256)  # steps per end-to-end run
    rounds: int = Field(3, ge=3, le=10)  # alternating rounds per benchmark (medians)
    env_steps: int = Field(2000, ge=100)  # steps per raw env measurement
    algos: bool = False  # include `python -m rlcore.bench algos` (out/algos/) in the report
    contention: bool = False  # include `python -m rlcore.bench contention` (out/contention.json)


class SearchDim(Section):
    """One dimension of the tuning search space, keyed by a dotted param name."""

    type: Literal["pow2", "int", "float", "categorical", "layers"]
    low: float | None = None  # pow2 and layers: exponents (2**low .. 2**high)
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: list[Any] | None = None
    depth: list[int] | None = None  # layers: [fewest, most] hidden layers of the drawn width
    also: list[str] = Field(default_factory=list)  # other dotted params set to the same value

    @model_validator(mode="after")
    def _complete(self) -> SearchDim:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs choices")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"{self.type} needs low <= high")
        if self.type == "layers" and (
            self.depth is None or len(self.depth) != 2 or not 1 <= self.depth[0] <= self.depth[1]
        ):
            raise ValueError("layers needs depth: [fewest, most] with 1 <= fewest <= most")
        return self


class TuneConfig(Section):
    trials: int = Field(50, ge=1)
    study_name: str = Field("reach", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # also out/tune/<name>/
    # success_after_steps: held-out success after steps_per_trial steps; success_at_budget: after
    # budget_s seconds of training here (each configuration's throughput timed once, for probe_s)
    objective: Literal["success_after_steps", "success_at_budget"] = "success_at_budget"
    steps_per_trial: int = Field(300_000, ge=1000)
    budget_s: float = Field(60.0, gt=0.0)
    probe_s: float = Field(3.0, gt=0.0, le=600.0)
    seeds: int = Field(1, ge=1, le=10)
    eval_episodes: int = Field(1000, ge=10)  # held-out episodes in the batched twin per seed
    radius: float | None = Field(None, gt=0.0, le=1.0)  # m: the objective's success radius; None = env's
    vram_limit_mb: float | None = Field(None, gt=0)  # None: the hardware stage's limit
    pruner_startup_trials: int = Field(5, ge=0)
    pruner_warmup_percent: int = Field(30, ge=0, le=100)  # no pruning before this share of the steps
    heartbeat_interval: int = Field(10, ge=1)  # s; a killed worker's trial is retried after
    grace_period: int = Field(30, ge=2)  # s without a heartbeat
    space: dict[str, SearchDim] = Field(
        default_factory=lambda: {
            "train.actor_hidden": SearchDim(type="layers", low=5, high=8, depth=[1, 3], also=["train.critic_hidden"]),
            "train.epochs": SearchDim(type="int", low=1, high=6),
            "train.n_steps": SearchDim(type="categorical", choices=[8, 16, 32]),
            "train.n_envs": SearchDim(type="pow2", low=7, high=10),
            "train.minibatches": SearchDim(type="pow2", low=0, high=3),
            "train.learning_rate": SearchDim(type="float", low=3e-4, high=3e-3, log=True),
        }
    )


class Params(Section):
    seed: int = Field(0, ge=0)
    robot: RobotConfig = RobotConfig()
    targets: TargetsConfig = TargetsConfig()
    env: EnvConfig = EnvConfig()
    hardware: HardwareConfig = HardwareConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    report: ReportConfig = ReportConfig()
    tune: TuneConfig = TuneConfig()

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, e.g. {"env.success_radius": 0.02}, for logging."""
        return _flatten(self.model_dump())

    def section_hash(self, *sections: str) -> str:
        """Stable hash of some sections (or all), for cache metadata and run tags."""
        data = self.model_dump()
        picked = {s: data[s] for s in sections} if sections else data
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
