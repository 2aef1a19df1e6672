"""One typed, validated schema for params.yaml, `--set KEY=VALUE` overrides and tuning trials.

Every error becomes a `ConfigError` whose message is one line naming the key, the value and what
is allowed; stage scripts print it and exit before any work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from rlcore.config_base import ConfigError, Section
from rlcore.config_offpolicy import SB3_ALGOS, DqnConfig, SacConfig


class RobotConfig(Section):
    urdf: str = "fanuc_lrmate200id"
    ee_link: str | None = None  # default: a bundled robot's own (the FANUC's flange), else the chain's last link
    home: list[float] | None = None  # joint angles (rad) of the home pose; default all zero

    @model_validator(mode="after")
    def _chain_exists(self) -> RobotConfig:
        """The URDF, its end-effector link and the home pose's length are checked here, so a
        wrong robot stops every stage with one line before any work."""
        from rlcore.robots.chain import read_chain

        try:
            chain = read_chain(self.urdf, self.ee_link)
        except FileNotFoundError as err:
            raise ValueError(str(err)) from None
        if self.home is not None and len(self.home) != chain.dof:
            raise ValueError(f"robot.home has {len(self.home)} angles; {chain.urdf_path.name} has {chain.dof} joints")
        return self


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
    action_rate: float = Field(0.01, ge=0.0)  # -w * |a - a_prev|^2 / dof


class CurriculumConfig(Section):
    enabled: bool = True
    start_level: int = Field(0, ge=0)
    max_level: int = Field(2, ge=0)  # the max_difficulty cap
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    window: int = Field(100, ge=1)


class EnvConfig(Section):
    backend: Literal["bullet", "batched"] = "batched"  # "bullet": the physics engine of `physics`
    physics: Literal["auto", "pybullet", "mujoco"] = "auto"  # auto: PyBullet where it imports, else MuJoCo
    control_hz: int = Field(30, ge=1, le=500)
    episode_steps: int = Field(60, ge=1, le=10_000)
    success_radius: float = Field(0.02, gt=0.0, le=1.0)
    reset_noise: float = Field(0.1, ge=0.0, le=3.2)  # rad, uniform around the home pose
    target_noise: float = Field(0.0, ge=0.0, le=0.5)  # rad of joint noise on cached targets
    tracking: float = Field(0.8, gt=0.0, lt=1.0)  # gap to the commanded position closed per step
    train_physics: PhysicsConfig = PhysicsConfig(sim_hz=120, solver_iterations=10)
    eval_physics: PhysicsConfig = PhysicsConfig(sim_hz=240, solver_iterations=50)
    reward: RewardConfig = RewardConfig()
    curriculum: CurriculumConfig = CurriculumConfig()

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
    n_envs_bullet: int | None = Field(None, ge=1, le=256)  # None: placement.BULLET_ENVS (64)
    n_envs_batched: int | None = Field(None, ge=1, le=1 << 22)
    gpu_margin: float = Field(1.2, ge=1.0, le=10.0)  # a GPU must be this much faster to be chosen
    # PyBullet worker processes: auto = forkserver where the OS has it, else spawn (Windows)
    mp_start_method: Literal["auto", "forkserver", "spawn", "fork"] = "auto"

    @field_validator("mp_start_method")
    @classmethod
    def _start_method_exists_here(cls, value: str) -> str:
        from rlcore.oscompat import start_methods

        if value != "auto" and value not in start_methods():
            available = ", ".join(start_methods())
            raise ValueError(f"{value!r} is not available on this OS (available: {available}); use auto")
        return value


class TrainConfig(Section):
    # rlcore (on-device PPO) | sb3 (SB3 PPO) | sb3_sac | sb3_dqn (SB3 off-policy, PyBullet envs)
    algo: Literal["rlcore", "sb3", "sb3_sac", "sb3_dqn"] = "rlcore"
    total_steps: int = Field(3_000_000, ge=1)
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
    entropy_coef: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    target_kl: float | None = Field(0.01, gt=0.0)  # adaptive lr aims here; else epochs stop past 1.5x
    actor_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    critic_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "tanh", "relu", "silu"] = "elu"
    init_log_std: float = Field(-1.0, ge=-5.0, le=2.0)
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


class ExportConfig(Section):
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"  # auto: dynamo on torch >= 2.9, else torchscript
    parity_observations: int = Field(10_000, ge=100, le=1_000_000)  # onnxruntime vs torch check
    controller_episodes: int = Field(200, ge=0, le=100_000)  # held-out PyBullet episodes driven by the controller
    register_min_success: float = Field(0.95, ge=0.0, le=1.0)  # register as rlcore-reach from this held-out success


Benchmark = Literal["env", "batched", "update", "ppo"]  # the report's benchmarks (rlcore.report.measure)


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
    study_name: str = "reach"
    # success_after_steps: held-out success after steps_per_trial steps; success_at_budget: after
    # budget_s seconds of training here (each configuration's throughput timed once, for probe_s)
    objective: Literal["success_after_steps", "success_at_budget"] = "success_at_budget"
    steps_per_trial: int = Field(300_000, ge=1000)
    budget_s: float = Field(60.0, gt=0.0)
    probe_s: float = Field(3.0, gt=0.0, le=600.0)
    seeds: int = Field(1, ge=1, le=10)
    eval_episodes: int = Field(1000, ge=10)  # held-out episodes in the batched twin per seed
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

    @model_validator(mode="after")
    def _sb3_runs_on_pybullet(self) -> Params:
        algo = self.train.algo
        if algo in SB3_ALGOS and self.env.backend != "bullet":
            raise ValueError(f"train.algo = {algo!r} needs env.backend = 'bullet' (SB3 has no batched backend)")
        table = self.train.dqn.actions
        if isinstance(table, list):
            from rlcore.robots.chain import read_chain

            dof = read_chain(self.robot.urdf, self.robot.ee_link).dof
            problems = [f"row {i} has {len(row)} values" for i, row in enumerate(table) if len(row) != dof]
            problems += [f"row {i} leaves [-1, 1]" for i, row in enumerate(table) if any(abs(v) > 1 for v in row)]
            if not table or problems:
                raise ValueError(
                    f"train.dqn.actions: {problems[0] if problems else 'no rows'}; each row needs {dof} values "
                    f"in [-1, 1], one per joint of {self.robot.urdf}"
                )
        return self

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


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Params
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if isinstance(p, str))
    key = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{source}: unknown key {key!r} (allowed here: {allowed})"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and msg.startswith(f"{key}."):  # the message names its own key
        return f"{source}: {msg}"
    if e["type"] == "value_error":
        return f"{source}: {key}: {msg}" if key != "(top level)" else f"{source}: {msg}"
    return f"{source}: {key} = {e.get('input')!r}: {msg}"


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'a.b=VALUE' and parse VALUE as YAML (so 3 is an int, 0.1 a float, null None)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set env.success_radius=0.03")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); unknown keys are left for validation to name."""
    data = json.loads(json.dumps(data))
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def validate(data: dict[str, Any], source: str = "params") -> Params:
    """Validate a nested dict into Params, raising a one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml, apply `--set` overrides and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    return validate(data, source=str(path))
