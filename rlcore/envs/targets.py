"""The reachable-target cache: save/load with checks, difficulty levels, sampling, curriculum
(rlcore.envs.target_build builds it).

Targets come from forward kinematics of random joint configurations inside the limits (always
reachable), with self-colliding ones, ones below `targets.min_height`, ones closer than
`targets.min_radius` to the J1 axis and ones outside the workcell's `targets.max_azimuth_deg`
(measured from the base's +x axis) rejected. Difficulty is the distance from the home-pose flange,
binned into equal-count levels (0 = easy) whose edges are stored with the cache.
"""

from __future__ import annotations

import json
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.robots.chain import read_chain

FORMAT_VERSION = 1
REBUILD_HINT = "run `dvc repro targets` (or `python stages/targets.py`) to rebuild it"


class TargetCacheError(RuntimeError):
    """The cache is missing, corrupt or was built for another robot or other params."""


def cache_key(params: Params) -> dict[str, Any]:
    """What a cache depends on: the robot file's content and the robot/targets params."""
    chain = read_chain(params.robot.urdf, params.robot.ee_link)
    key = {
        "format_version": FORMAT_VERSION,
        "urdf_sha256": chain.sha256,
        "robot": params.robot.model_dump(),
        "targets": params.targets.model_dump(exclude={"path"}),
    }
    cell = cell_of(params.env)
    return key | {"workcell": cell.id} if cell else key


@dataclass
class TargetCache:
    """Reachable targets with the joint configuration that reaches each one."""

    positions: np.ndarray  # (N, 3) float32, flange position in the base frame (m)
    joints: np.ndarray  # (N, dof) float32, a collision-free configuration reaching it
    level: np.ndarray  # (N,) int64, 0 = easiest
    heldout: np.ndarray  # (N,) bool, never sampled for training
    bin_edges: np.ndarray  # (levels - 1,) distance edges between levels (m)
    home_position: np.ndarray  # (3,) flange at the home pose
    meta: dict[str, Any] = field(default_factory=dict)
    _tree: Any = field(default=None, repr=False)

    @property
    def n_levels(self) -> int:
        return len(self.bin_edges) + 1

    def indices(self, split: str = "train", max_level: int | None = None) -> np.ndarray:
        """Indices of the targets of a split ("train", "heldout", "all") up to a level."""
        mask = np.ones(len(self.positions), dtype=bool)
        if split == "train":
            mask &= ~self.heldout
        elif split == "heldout":
            mask &= self.heldout
        elif split != "all":
            raise ValueError(f"split must be train, heldout or all, not {split!r}")
        if max_level is not None:
            mask &= self.level <= max_level
        return np.flatnonzero(mask)

    def sample(
        self, n: int, rng: np.random.Generator, split: str = "train", max_level: int | None = None
    ) -> np.ndarray:
        """Indices of n targets drawn uniformly from a split up to a level (vectorised)."""
        pool = self.indices(split, max_level)
        if len(pool) == 0:
            raise ValueError(f"no {split} targets at levels <= {max_level}")
        return pool[rng.integers(0, len(pool), size=n)]

    def jittered(self, idx: np.ndarray, noise: float, rng: np.random.Generator, fk: Any) -> np.ndarray:
        """Targets near idx that stay reachable: uniform joint noise (rad) on the stored
        configurations, then `fk`, which maps (n, dof) configurations, clipped to the joint
        limits, to (n, 3) positions."""
        if noise <= 0:
            return self.positions[idx]
        q = self.joints[idx] + rng.uniform(-noise, noise, size=self.joints[idx].shape)
        return np.asarray(fk(q), dtype=np.float32)

    def is_position_reachable(self, points: np.ndarray, tol: float = 0.01) -> np.ndarray:
        """True where a cached reachable target lies within `tol` metres (KD-tree query)."""
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._tree = cKDTree(self.positions)
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        dist, _ = self._tree.query(points, k=1)
        return dist <= tol

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            positions=self.positions,
            joints=self.joints,
            level=self.level,
            heldout=self.heldout,
            bin_edges=self.bin_edges,
            home_position=self.home_position,
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, params: Params | None = None) -> TargetCache:
        """Load a cache; with params, check it was built for this robot and these params."""
        path = Path(path)
        if not path.is_file():
            raise TargetCacheError(f"target cache {path} is missing: {REBUILD_HINT}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
            cache = cls(**arrays, meta=meta)
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, EOFError) as err:
            raise TargetCacheError(f"target cache {path} is unreadable ({err}): {REBUILD_HINT}") from None
        if params is not None:
            expected = cache_key(params)
            expected.setdefault("workcell", None)  # a free-space run needs a free-space cache
            for key, want in expected.items():
                if meta.get(key) != want:
                    raise TargetCacheError(
                        f"target cache {path} is stale: its {key} differs from the current robot/params: {REBUILD_HINT}"
                    )
        return cache


def summary(cache: TargetCache) -> str:
    """A short human-readable table: targets per level and split, workspace bounds."""
    lines = [f"{'level':>5} {'train':>7} {'heldout':>7} {'distance from home (m)':>24}"]
    edges = [0.0, *cache.bin_edges.tolist(), float("inf")]
    for lvl in range(cache.n_levels):
        in_level = cache.level == lvl
        lines.append(
            f"{lvl:>5} {int((in_level & ~cache.heldout).sum()):>7} "
            f"{int((in_level & cache.heldout).sum()):>7} {edges[lvl]:>11.3f} .. {edges[lvl + 1]:<9.3f}"
        )
    dropped = cache.meta.get("dropped_by_obstacles")
    if dropped:
        lines.append(f"dropped in the workcell's obstacles, by level: {', '.join(map(str, dropped))}")
    lo, hi = cache.positions.min(0), cache.positions.max(0)
    lines.append(
        f"workspace x [{lo[0]:.3f}, {hi[0]:.3f}]  y [{lo[1]:.3f}, {hi[1]:.3f}]  z [{lo[2]:.3f}, {hi[2]:.3f}] m"
    )
    return "\n".join(lines)


class Curriculum:
    """Raise the target level when the success rate of the most recent episodes passes a threshold.

    update() takes the success flags of the episodes that ended, in the order they ended
    (episodes ending on the same step: by env index). The rate is taken over the most recent
    whole batches that hold at least `window` episodes, so a batch larger than the window
    (256 envs ending together) counts whole, whatever n_envs is. `in_flight` is how many
    episodes run at once (n_envs): after a level change that many results are skipped, since
    those episodes started at the old level.
    """

    @classmethod
    def from_config(cls, cfg: Any, n_levels: int, in_flight: int = 0) -> Curriculum:
        """From params' `env.curriculum`, capped at the cache's top level; disabled = top level."""
        cur = cls(cfg.start_level, min(cfg.max_level, n_levels - 1), cfg.threshold, cfg.window, in_flight)
        if not cfg.enabled:
            cur.level = cur.max_level
        return cur

    def __init__(self, start_level: int, max_level: int, threshold: float, window: int, in_flight: int = 0) -> None:
        self.level = min(start_level, max_level)
        self.max_level = max_level
        self.threshold = threshold
        self.window = window
        self.in_flight = in_flight
        self.skip = 0
        self.batches: deque[list[bool]] = deque()  # the recent batches, oldest first
        self.count = 0  # episodes in self.batches

    @property
    def success_rate(self) -> float:
        """The success rate over the kept batches (0 when there are none)."""
        return sum(map(sum, self.batches)) / self.count if self.count else 0.0

    def update(self, successes: Any) -> bool:
        """Record one batch of finished episodes' success flags; return True if the level went up."""
        flags = [bool(s) for s in np.atleast_1d(successes)]
        skipped = min(self.skip, len(flags))
        self.skip -= skipped
        if len(flags) > skipped:
            self.batches.append(flags[skipped:])
            self.count += len(flags) - skipped
        while self.batches and self.count - len(self.batches[0]) >= self.window:
            self.count -= len(self.batches.popleft())
        if self.level < self.max_level and self.count >= self.window and self.success_rate >= self.threshold:
            self.level += 1
            self.batches.clear()
            self.count = 0
            self.skip = self.in_flight
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "batches": [list(b) for b in self.batches], "skip": self.skip}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.level = int(state["level"])
        self.skip = int(state.get("skip", 0))
        # older checkpoints hold one flat list of results
        batches = state.get("batches", [state["results"]] if state.get("results") else [])
        self.batches = deque([bool(r) for r in b] for b in batches)
        self.count = sum(map(len, self.batches))
