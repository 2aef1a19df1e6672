"""PyBullet or MuJoCo envs in worker processes that share one memory block with the trainer.

Observations, actions, rewards and flags live in shared arrays (multiprocessing RawArrays, which
spawn, forkserver and fork all hand to a child at start); each step the trainer writes the
actions, releases every worker's semaphore and waits on its own. Nothing is pickled per step, and
waiting is a blocking semaphore wait in the kernel: workers use no CPU between steps, so the
update gets every core while they sleep. One worker per core, each stepping a chunk of envs
(rlcore.envs.vec.ChunkEnv), pinned to its core while no other rlcore job runs
(rlcore.runtime.sharing.worker_cores).

Why not pufferlib-core's Multiprocessing (the same shared-buffer design): its 3.0 wheels pin
torch==2.9.0 exactly (torch-directml pins 2.4.1), and its workers spin for 0.5 s after each step
before sleeping, which on 2 cores takes the cores from the update. See docs/benchmarks.md.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import traceback
from typing import Any

import numpy as np
import torch

from rlcore.config.schema import Params
from rlcore.config.workcell import cell_of
from rlcore.envs.targets import TargetCache
from rlcore.envs.task import StepResult
from rlcore.envs.vec import ChunkEnv, PhysicsVecEnv, make_chunked_vec_env
from rlcore.runtime.oscompat import preload_for_forkserver, resolve_start_method
from rlcore.runtime.sharing import usable_cores, worker_cores

log = logging.getLogger(__name__)
STEP, RESET, SET_LEVEL, CLOSE = 1, 2, 3, 4
OK, FAILED = 0, 1
WAIT_S = 5.0  # between checks that the workers are alive while waiting for them


class WorkerError(RuntimeError):
    """A worker process failed (its traceback is the message) or died."""


def _arrays(buffers: dict[str, Any], n_envs: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Numpy views of the shared buffers (the same memory in every process)."""
    shapes = {
        "actions": (n_envs, act_dim),
        "obs": (n_envs, obs_dim),
        "final_obs": (n_envs, obs_dim),
        "rewards": (n_envs,),
        "distance": (n_envs,),
        "dones": (n_envs,),
        "success": (n_envs,),
        "terminated": (n_envs,),
        "command": (3,),  # command, its argument (a seed or a level), spare
        "status": (None,),
    }
    views = {}
    for name, shape in shapes.items():
        raw = buffers[name]
        dtype = {ctypes.c_float: np.float32, ctypes.c_bool: np.bool_, ctypes.c_int64: np.int64}[raw._type_]
        views[name] = np.frombuffer(raw, dtype=dtype).reshape(shape if shape != (None,) else -1)
    return views


def _worker(
    index: int,
    lo: int,
    hi: int,
    params: Params,
    targets: TargetCache | None,
    mode: str,
    seed: int,
    cpu: int | None,
    buffers: dict[str, Any],
    dims: tuple[int, int, int],
    go: Any,
    done: Any,
    errors: Any,
) -> None:
    """One worker's loop: wait for a command, run it on envs lo..hi, write results, signal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle, at an update boundary
    torch.set_num_threads(1)
    views = _arrays(buffers, *dims)
    chunk = None
    try:
        chunk = ChunkEnv(params, targets, mode, list(range(seed + lo, seed + hi)), cpu)
    except BaseException:  # noqa: BLE001 - reported to the trainer, which raises it
        errors.send(traceback.format_exc())
        views["status"][index] = FAILED
        done.release()
        return
    views["status"][index] = OK
    done.release()
    while True:
        go.acquire()
        command, argument = int(views["command"][0]), int(views["command"][1])
        try:
            if command == STEP:
                obs, _, _, _, info = chunk.step(views["actions"][lo:hi])
                views["obs"][lo:hi] = obs
                for key in ("final_obs", "rewards", "distance", "dones", "success", "terminated"):
                    views[key][lo:hi] = info[key]
            elif command == RESET:
                views["obs"][lo:hi] = chunk.reset(seed=argument)[0]
            elif command == SET_LEVEL:
                chunk.set_level(argument)
            elif command == CLOSE:
                chunk.close()
                done.release()
                return
        except BaseException:  # noqa: BLE001 - reported to the trainer, which raises it
            errors.send(traceback.format_exc())
            views["status"][index] = FAILED
        done.release()


class SharedMemoryVecEnv:
    """n_envs physics envs over worker processes and one shared memory block, behind the tensor
    API of rlcore.envs.task (the same as BatchedReachEnv and PhysicsVecEnv)."""

    def __init__(
        self,
        params: Params,
        targets: TargetCache | None,
        n_envs: int,
        device: torch.device,
        mode: str = "train",
        seed: int = 0,
        workers: int | None = None,
    ) -> None:
        from rlcore.envs.engines import make_reach_env

        probe = make_reach_env(params, targets, mode=mode)
        self.obs_dim, self.act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
        probe.close()
        self.num_envs, self.device = n_envs, device
        cpus = worker_cores(params.hardware.cores)
        self.workers = min(n_envs, workers or len(cpus))
        method = resolve_start_method(params.hardware.mp_start_method)
        preload_for_forkserver(method, ["rlcore.envs.vec", __name__])
        ctx = mp.get_context(method)
        self.note = f"shared memory ({self.workers} workers, {method})"
        self.workcell = bool(cell_of(params.env))
        dims = (n_envs, self.obs_dim, self.act_dim)
        f, b = ctypes.c_float, ctypes.c_bool
        self._buffers = {
            "actions": ctx.RawArray(f, n_envs * self.act_dim),
            "obs": ctx.RawArray(f, n_envs * self.obs_dim),
            "final_obs": ctx.RawArray(f, n_envs * self.obs_dim),
            "rewards": ctx.RawArray(f, n_envs),
            "distance": ctx.RawArray(f, n_envs),
            "dones": ctx.RawArray(b, n_envs),
            "success": ctx.RawArray(b, n_envs),
            "terminated": ctx.RawArray(b, n_envs),
            "command": ctx.RawArray(ctypes.c_int64, 3),
            "status": ctx.RawArray(ctypes.c_int64, self.workers),
        }
        self._views = _arrays(self._buffers, *dims)
        self._done = ctx.Semaphore(0)
        self._go = [ctx.Semaphore(0) for _ in range(self.workers)]
        self._errors, child_errors = ctx.Pipe(duplex=False)
        bounds = np.linspace(0, n_envs, self.workers + 1).astype(int)
        self._procs = []
        for i in range(self.workers):
            args = (i, int(bounds[i]), int(bounds[i + 1]), params, targets, mode, seed, cpus[i % len(cpus)])
            proc = ctx.Process(
                target=_worker,
                args=(*args, self._buffers, dims, self._go[i], self._done, child_errors),
                daemon=True,
                name=f"rlcore-env-{i}",
            )
            proc.start()
            self._procs.append(proc)
        self._closed = False
        try:
            self._wait()  # every worker built its envs (or said why not)
        except WorkerError:
            self.close()
            raise
        self._returns = np.zeros(n_envs, dtype=np.float32)

    def _wait(self) -> None:
        """Block until every worker has signalled; raise WorkerError when one failed or died."""
        for _ in range(self.workers):
            while not self._done.acquire(timeout=WAIT_S):
                dead = [p.name for p in self._procs if not p.is_alive()]
                if dead:
                    raise WorkerError(f"env worker(s) {', '.join(dead)} died (exit codes shown by the OS)")
        if (self._views["status"] != OK).any():
            message = self._errors.recv() if self._errors.poll(1.0) else "no traceback"
            raise WorkerError(f"an env worker failed:\n{message}")

    def _command(self, command: int, argument: int = 0) -> None:
        self._views["command"][:2] = (command, argument)
        for go in self._go:
            go.release()
        self._wait()

    def set_level(self, level: int) -> None:
        self._command(SET_LEVEL, int(level))

    def reset(self) -> torch.Tensor:
        self._returns[:] = 0
        self._command(RESET, 0)
        return torch.from_numpy(self._views["obs"].copy()).to(self.device)

    def step(self, actions: torch.Tensor) -> StepResult:
        self._views["actions"][:] = actions.detach().cpu().numpy()
        self._command(STEP)
        v = self._views
        self._returns += v["rewards"]
        returns = self._returns.copy()
        self._returns[v["dones"]] = 0
        arrays = (v["obs"], v["rewards"], v["dones"], v["final_obs"], v["success"], v["distance"])
        tensors = [torch.from_numpy(a.copy()).to(self.device) for a in arrays]
        terminated = torch.from_numpy(v["terminated"].copy()).to(self.device) if self.workcell else None
        return StepResult(*tensors, torch.from_numpy(returns).to(self.device), bool(v["dones"].any()), terminated)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        alive = [p for p in self._procs if p.is_alive()]
        if alive and len(alive) == len(self._procs):
            try:
                self._command(CLOSE)
            except WorkerError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def make_physics_vec_env(
    params: Params,
    targets: TargetCache | None,
    n_envs: int,
    device: torch.device,
    mode: str = "train",
    seed: int = 0,
    workers: int | None = None,
) -> Any:
    """the physics backend's envs by `train.vec_env`: "shared" (worker processes on one shared
    memory block, rlcore.envs.shared_vec), "subproc" (SB3's SubprocVecEnv pipes, chunked), "dummy"
    (in-process), or "auto": shared memory when there is more than one core, falling back to
    in-process with the reason when worker processes cannot start."""
    kind = params.train.vec_env
    n_workers = min(n_envs, workers or usable_cores(params.hardware.cores))
    if kind == "shared" or (kind == "auto" and n_workers > 1):
        try:
            return SharedMemoryVecEnv(params, targets, n_envs, device, mode=mode, seed=seed, workers=n_workers)
        except Exception as err:  # noqa: BLE001 - any start failure under auto means: run in-process
            if kind == "shared":
                raise
            log.warning("shared-memory env workers could not start (%s); running the envs in-process", err)
            venv, _ = make_chunked_vec_env(params, targets, n_envs, "dummy", mode, seed)
            why = f"dummy (workers failed: {str(err).splitlines()[0]})"
            return PhysicsVecEnv(venv, device, why, workcell=bool(cell_of(params.env)))
    venv, note = make_chunked_vec_env(params, targets, n_envs, kind=kind, mode=mode, seed=seed, workers=workers)
    return PhysicsVecEnv(venv, device, note, workcell=bool(cell_of(params.env)))
