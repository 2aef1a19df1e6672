"""`python -m rlcore.bench contention`: how training shares a machine. Runs k = 1, 2 (and 4 where
the machine has 4 cores) identical trainings at once, and one training beside a lowest-priority
busy loop, for each row (rlcore PPO on the twin and on PyBullet, SB3 PPO on PyBullet), in
alternating rounds. Each training is a process of its own (`python -m rlcore.bench.contention
--child`), the train stage's code at params.yaml's settings on the CPU; the k processes build their
envs, then start training together (a barrier), and each times its own training. Reported per
condition: each run's steps/s and the aggregate (their sum), against one run alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlcore.bench.rounds import SINGLE, machine, single_env_fps
from rlcore.config.schema import Params
from rlcore.runtime.oscompat import cpu_list
from rlcore.stats import Spread

ROWS: dict[str, list[str]] = {
    "rlcore PPO, twin": ["env.backend=twin", "train.algo=rlcore"],
    "rlcore PPO, PyBullet": ["env.backend=physics", "env.physics=pybullet", "train.algo=rlcore"],
    "SB3 PPO, PyBullet": ["env.backend=physics", "env.physics=pybullet", "train.algo=sb3"],
}
STEPS = {"twin": 500_000, "physics": 50_000}  # per run: ~10-15 s alone on a 2-core CPU
READY, GO, RESULT = "rlcore-contention-ready", "go", "rlcore-contention-result "
BUSY = "busy"  # the condition: one run beside a lowest-priority busy loop
START_TIMEOUT_S = 600.0


def conditions(cores: int) -> list[str]:
    """k runs at once ("1", "2", "4" where cores allow) and one run beside a busy loop."""
    return ["1", "2", *(["4"] if cores >= 4 else []), BUSY]


def child(sets: list[str]) -> None:
    """One training (the train stage's code, CPU, no MLflow): build everything, say READY, wait
    for GO on stdin, train, print RESULT {steps, seconds timed from GO to the end, threads per
    update}."""
    from rlcore.pipeline import train as runs
    from rlcore.pipeline.params import load_params_or_defaults
    from rlcore.pipeline.placement import BULLET_ENVS, CPU_BATCHED_ENVS, Placement

    params = load_params_or_defaults("params.yaml", ["hardware.device=cpu", *sets])
    decision = Placement("cpu", "cpu", BULLET_ENVS, CPU_BATCHED_ENVS, None, [])
    params, res = runs.resolve(params, decision)
    targets = runs.load_targets(params, Path.cwd())
    runs.cpu_threads(params)
    clock: dict[str, float] = {}

    def on_start(run: Any, note: str | None) -> None:
        print(READY, flush=True)
        sys.stdin.readline()
        clock["start"] = time.perf_counter()

    threads: list[float] = []  # rlcore PPO's share of the cores, per update

    def on_iteration(row: dict[str, Any]) -> None:
        threads.append(row.get("cpu_threads", float("nan")))

    summary, _ = runs.train(params, res, targets, None, on_start, on_iteration, progress=False)
    seconds = time.perf_counter() - clock["start"]
    print(RESULT + json.dumps({"steps": int(summary["steps"]), "seconds": seconds, "threads": threads}), flush=True)


def _spawn(args: list[str], stdin: Any = subprocess.PIPE, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )


def _busy_loop() -> subprocess.Popen:
    """A process that spins one core forever at the lowest priority the OS gives."""
    code = "from rlcore.runtime.oscompat import lowest_priority; lowest_priority()\nwhile True: pass"
    return _spawn(["-c", code], stdin=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen, marker: str) -> str:
    """The first stdout line starting with marker; RuntimeError with the child's stderr if it ends first."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(marker):
            return line[len(marker) :].strip()
    proc.wait()
    tail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-5:]
    raise RuntimeError(f"a contention run ended (exit {proc.returncode}) before {marker!r}: " + " | ".join(tail))


def run_group(sets: list[str], k: int, busy: bool = False, cwd: Path | None = None) -> list[dict[str, Any]]:
    """k trainings at once (plus a busy loop if asked) in `cwd` (its params.yaml and targets),
    started together; each one's {steps, seconds, fps, threads}."""
    loop = _busy_loop() if busy else None
    procs = [_spawn(["-m", "rlcore.bench.contention", "--child", json.dumps(sets)], cwd=cwd) for _ in range(k)]
    try:
        for proc in procs:
            _read_until(proc, READY)
        for proc in procs:  # GO to all at once: their trainings overlap from the first update
            assert proc.stdin is not None
            proc.stdin.write(GO + "\n")
            proc.stdin.flush()
        results = [json.loads(_read_until(proc, RESULT)) for proc in procs]
        return [{**r, "fps": r["steps"] / r["seconds"]} for r in results]
    finally:
        for proc in [*procs, *([loop] if loop else [])]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def run(params: Params, rows: list[str], rounds: int, steps: dict[str, int] | None = None) -> dict[str, Any]:
    """Every (row, condition) once per round, in the same order each round; medians over rounds of
    the aggregate steps/s and of the mean per-run steps/s, and the machine's single-env steps/s."""
    steps = {**STEPS, **(steps or {})}
    conds = conditions(len(cpu_list()))
    aggregate = {(r, c): Spread() for r in rows for c in conds}
    per_run = {(r, c): Spread() for r in rows for c in conds}
    single = Spread()
    for i in range(rounds):
        for row in rows:
            backend = "twin" if "env.backend=twin" in ROWS[row] else "physics"
            sets = [*ROWS[row], f"train.total_steps={steps[backend]}"]
            for cond in conds:
                print(f"bench contention: round {i + 1}/{rounds}, {row}, {describe(cond)}", flush=True)
                fps = [r["fps"] for r in run_group(sets, 1 if cond == BUSY else int(cond), busy=cond == BUSY)]
                aggregate[(row, cond)].runs.append(sum(fps))
                per_run[(row, cond)].runs.append(sum(fps) / len(fps))
        single.runs.append(single_env_fps(params))
    table = []
    for row in rows:
        alone = aggregate[(row, "1")].median
        for cond in conds:
            agg = aggregate[(row, cond)]
            table.append(
                {
                    "row": row,
                    "condition": describe(cond),
                    "runs": 1 if cond == BUSY else int(cond),
                    "per_run": per_run[(row, cond)].median,
                    "aggregate": agg.median,
                    "vs_alone": agg.median / alone,
                    "spread": agg.spread,
                }
            )
    return {"rounds": rounds, "steps": steps, "rows": table, "machine": machine({SINGLE: single}, params)}


def describe(cond: str) -> str:
    return "beside a busy loop" if cond == BUSY else ("alone" if cond == "1" else f"{cond} at once")


def text(result: dict[str, Any]) -> list[str]:
    """The table as printed lines."""
    from rlcore.bench.rounds import machine_text

    lines = [
        f"Trainings sharing this machine (median of {result['rounds']} alternating rounds; "
        "aggregate = the runs' steps/s summed; vs alone = aggregate / one run alone)",
        f"{'row':<22} {'condition':<20} {'per run':>9} {'aggregate':>10} {'vs alone':>9} {'spread':>7}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['row']:<22} {r['condition']:<20} {r['per_run']:>9,.0f} {r['aggregate']:>10,.0f} "
            f"{r['vs_alone']:>8.2f}x {r['spread']:>7.0%}"
        )
    lines.append(machine_text(result["machine"]))
    return lines


def report_lines(path: Path) -> list[str]:
    """The table as a section of the report (report.contention); FileNotFoundError naming the
    file when `python -m rlcore.bench contention` has not run."""
    if not path.is_file():
        command = "python -m rlcore.bench contention"
        raise FileNotFoundError(f"report.contention is true but {path} is missing: run `{command}`")
    title = "## Trainings sharing the machine (`python -m rlcore.bench contention`)"
    return ["", title, "", "```", *text(json.loads(path.read_text())), "```"]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m rlcore.bench contention (this module's --child is its own)")
