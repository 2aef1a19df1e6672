"""Helpers for tests that run stages in a throwaway copy of the repository."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_PARAMS = {
    "targets": {"n": 400},
    "env": {"backend": "twin"},
    "hardware": {"n_envs_twin": 256},
    "train": {
        "total_steps": 16384,
        "n_envs": 64,
        "n_steps": 16,
        "actor_hidden": [32, 32],
        "critic_hidden": [32, 32],
        "checkpoint_every": 2,
    },
    "eval": {"episodes": 8, "gif_episodes": 1},
    # the TorchScript exporter takes 0.1 s where the dynamo one takes ~6 s; tests/test_export.py tests both
    "export": {"exporter": "torchscript", "parity_observations": 1000, "controller_episodes": 8},
    "report": {
        "vec_n_envs": [1, 2],
        "batched_n_envs": [64, 256],
        "ppo_n_envs": 2,
        "ppo_steps": 256,
        "rounds": 3,
        "env_steps": 100,
    },
}


def copy_repo(dest: Path, params: dict | None = None, git: bool = True) -> Path:
    """The tracked files of this repo in dest (a git repo with one commit), with tiny params."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    data = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in (params or TINY_PARAMS).items():
        data[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if git:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
            subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest


def child_env() -> dict[str, str]:
    """The environment for a stage in a repo copy: unbuffered, the copy's own MLflow store."""
    # DVC_NO_ANALYTICS: no usage report from test runs (DVC sends it from a daemon it forks on POSIX)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    return env


def start_stage(name: str, cwd: Path, *args: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    """A stage started in the background (to be killed or interrupted by the test): the copy's
    own script where cwd is a repo copy, else this repo's."""
    script = cwd / "stages" / f"{name}.py"
    script = script if script.is_file() else ROOT / "stages" / f"{name}.py"
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=child_env(),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        **posix_child(sigint_default=True),
    )


def run(cmd: list[str], cwd: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=child_env())
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def stage(name: str, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, f"stages/{name}.py", *args], cwd, check=check)


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).with_name("dvc")), *args], cwd)


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(backend_uri: str, port: int, cwd: Path, artifacts: Path | None = None) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:port, in its own process group, ready (its /health answers).
    At the lowest CPU priority and without MLflow 3's job runner, whose idle Huey consumers poll
    on every core: the machine has 2 cores, and the server must not slow what it serves."""
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend_uri]
    cmd += ["--artifacts-destination", str(artifacts)] if artifacts else []
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return start_http_process(cmd, f"http://127.0.0.1:{port}/health", cwd, env, low_priority=True)


def start_http_process(
    cmd: list[str], ready_url: str, cwd: Path, env: dict | None = None, low_priority: bool = False, timeout: float = 180
) -> subprocess.Popen:
    """A server process in its own process group, returned once `ready_url` answers 200 (stopped,
    with its output in the error, if it never does)."""
    import time
    import urllib.request

    log = Path(cwd) / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env or dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            **posix_child(own_group=True, low_priority=low_priority),
        )
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_mlflow_server(proc)
    raise AssertionError(f"{' '.join(cmd[:3])} did not answer {ready_url}:\n{log.read_text()[-3000:]}")


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    """Kill the server and its workers at once (SIGKILL to its process group where the OS has
    process groups, else the server process)."""
    if proc.poll() is None:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait(timeout=30)


def posix_child(sigint_default: bool = False, own_group: bool = False, low_priority: bool = False) -> dict:
    """Popen keywords for what only POSIX offers, and nothing elsewhere (the one guarded helper).

    sigint_default: Ctrl-C reaches the child even when the tests run in the background (where a
    non-interactive shell starts them with SIGINT ignored, which children inherit).
    own_group: the child leads a process group of its own (killed as one by stop_mlflow_server).
    low_priority: the child runs at nice 19, so a server beside a timed run takes spare CPU only."""
    if os.name != "posix":
        return {}
    kwargs: dict = {"start_new_session": True} if own_group else {}

    def prepare() -> None:
        if sigint_default:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        if low_priority:
            os.nice(19)

    if sigint_default or low_priority:
        kwargs["preexec_fn"] = prepare
    return kwargs


def module_file(name: str) -> Path | None:
    """rlcore.x.y -> its file (package: __init__.py); None outside rlcore."""
    if name.split(".")[0] != "rlcore":
        return None
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every module an `import` in the file may load, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from pkg import module
    return names


def mini_checkout(root: Path, sections: dict, decision: dict | None = None) -> Path:
    """A pipeline checkout in miniature: params.yaml (the repo's, with `sections` merged in),
    data/targets.npz built from it, and out/hardware.json holding `decision` when given."""
    import json

    from rlcore.envs.target_build import build_cache
    from rlcore.pipeline.params import load_params

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        data[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    params = load_params(root / "params.yaml")
    build_cache(params).save(root / params.targets.path)
    if decision is not None:
        (root / "out").mkdir(exist_ok=True)
        (root / "out" / "hardware.json").write_text(json.dumps({"decision": decision}))
    return root


def ready_workspace(dest: Path, params: dict | None = None) -> Path:
    """copy_repo (no git) with the targets and hardware stages run: ready for `train`."""
    root = copy_repo(dest, params, git=False)
    stage("targets", root)
    stage("hardware", root)
    return root
