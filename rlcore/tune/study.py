"""Optuna sweeps on a shared storage: one worker's loop, the objective, MLflow nesting, results.

Any number of workers (processes, machines) share one study through its RDB storage. Each worker
counts finished (COMPLETE + PRUNED), running and waiting trials before it starts one, so the study
stops at exactly `trials`; heartbeats let a killed worker's trial be failed and retried.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rlcore.algos.registry import algorithm_for
from rlcore.config.schema import Params
from rlcore.pipeline import train as runs
from rlcore.pipeline.placement import Placement
from rlcore.runtime import files
from rlcore.runtime.devices import is_out_of_memory
from rlcore.tracking import runs as tracking
from rlcore.tune.space import (
    SurplusTrial,
    budget_steps,
    measure_throughput,
    promote_command,
    suggest,
    trial_values,
    with_values,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class TuneOptions:
    """What one worker was asked to do (CLI flags over the params' `tune` section)."""

    root: Path
    storage: str
    study_name: str
    trials: int
    steps_per_trial: int
    seeds: int
    vram_limit_mb: float | None
    objective: str = "success_after_steps"  # or success_at_budget: budget_s of training each
    budget_s: float = 60.0
    probe_s: float = 3.0
    timeout_s: float | None = None
    progress: bool = True
    poll_s: float = 2.0


def open_study(params: Params, opts: TuneOptions) -> optuna.Study:
    """Create or load the study on an RDB storage with heartbeats and failed-trial retries."""
    t = params.tune
    storage = optuna.storages.RDBStorage(
        opts.storage,
        heartbeat_interval=t.heartbeat_interval,
        grace_period=t.grace_period,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
    )
    return optuna.create_study(
        storage=storage,
        study_name=opts.study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, opts.trials // 5))),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=t.pruner_startup_trials, n_warmup_steps=t.pruner_warmup_percent
        ),
    )


def parent_run(study: optuna.Study, params: Params, opts: TuneOptions) -> str:
    """The study's MLflow parent run, created once and shared through the study's user attrs."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id:
        return run_id
    mine = tracking.open_run(opts.root, params, "tune", "study", extra_params={"tune.study": opts.study_name})
    client = tracking.client(opts.root)
    client.set_tag(mine, "mlflow.runName", f"study-{opts.study_name}")
    study.set_user_attr("mlflow_parent_run_id", mine)
    winner = study.user_attrs.get("mlflow_parent_run_id", mine)
    if winner != mine:  # another worker won the race: keep theirs
        client.delete_run(mine)
    return winner


def counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "finished": sum(s in FINISHED for s in states),
        "active": sum(s in (TrialState.RUNNING, TrialState.WAITING) for s in states),
        "waiting": sum(s == TrialState.WAITING for s in states),  # retries of killed workers' trials
        "pruned": sum(s == TrialState.PRUNED for s in states),
        "failed": sum(s == TrialState.FAIL for s in states),
    }


def check_objective(params: Params, opts: TuneOptions) -> None:
    """Stop before any work on an objective this algorithm cannot serve."""
    algorithm = algorithm_for(params)
    if opts.objective not in algorithm.objectives:
        raise runs.SetupError(
            f"tune.objective = {opts.objective} is not one train.algo = {params.train.algo} serves "
            f"({', '.join(algorithm.objectives)}): use --objective {algorithm.objectives[0]}"
        )


def make_objective(
    params: Params,
    opts: TuneOptions,
    decision: Placement,
    parent_id: str,
    train_fn: Callable[..., tuple[dict, dict]] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective: held-out success rate (the twin at accurate physics), averaged over seeds,
    after `steps_per_trial` steps, or (success_at_budget) after `budget_s` seconds of training.

    The budget is not a timer on the run: each configuration's throughput is timed once, for
    `probe_s`, and the budget becomes that many steps. Training and its score are then fixed by
    the steps, so a slow spell on a shared machine costs a trial a few percent of its steps (the
    median per-update rate of the probe), not its result.

    train_fn defaults to rlcore.pipeline.train.train (the train stage's code, for whatever `train.algo`
    names); tests inject others.
    """
    from rlcore.pipeline.evaluate import evaluate_batched, objective_key
    from rlcore.policy.file import policy_from_bundle

    algorithm = algorithm_for(params)
    check_objective(params, opts)
    train_fn = train_fn or runs.train
    targets = runs.load_targets(params, opts.root)
    client = tracking.client(opts.root)

    def objective(trial: optuna.Trial) -> float:
        _step_aside_if_surplus(trial, opts.trials)
        values = suggest(trial, params.tune.space)
        base = params.model_copy(
            update={"train": params.train.model_copy(update={"total_steps": opts.steps_per_trial})}
        )
        trial_params = with_values(base, values)
        n_envs = algorithm.n_envs(trial_params, decision.n_envs_for(trial_params.env.backend))
        trial_params = trial_params.model_copy(
            update={"train": trial_params.train.model_copy(update={"n_envs": n_envs})}
        )
        need = algorithm.memory(trial_params, n_envs)  # off the device (a replay buffer): no VRAM check
        estimate = need.mb if need.on_device else 0.0
        trial.set_user_attr("estimate_mb", round(estimate, 1))
        run_id = tracking.open_run(
            opts.root,
            trial_params,
            "tune",
            decision.policy_device,
            parent_run_id=parent_id,
            extra_params={"tune.trial": trial.number, "tune.estimate_mb": round(estimate, 1)},
        )
        client.set_tag(run_id, "mlflow.runName", f"{opts.study_name}-trial-{trial.number}")
        trial.set_user_attr("mlflow_run_id", run_id)  # a killed worker's run is closed by whoever retries it

        def prune(reason: str, excess_mb: float | None = None) -> optuna.TrialPruned:
            if excess_mb is not None:
                trial.set_constraint("vram_excess_mb", excess_mb)
            trial.set_user_attr("prune_reason", reason)
            client.set_tag(run_id, "trial_state", "PRUNED")
            client.set_tag(run_id, "prune_reason", reason)
            tracking.end_run(run_id, "KILLED", opts.root)
            return optuna.TrialPruned(reason)

        if opts.vram_limit_mb is not None and need.on_device:
            excess = estimate - opts.vram_limit_mb
            if excess > 0:
                raise prune(
                    f"infeasible memory: estimate {estimate:.1f} MB > limit {opts.vram_limit_mb:.1f} MB", excess
                )
        scores = []
        senders: list[tracking.MetricSender] = []  # one per seed; closed (delivered) in finally
        try:
            steps = opts.steps_per_trial
            if opts.objective == "success_at_budget":
                _, res = runs.resolve(trial_params, decision)
                fps = measure_throughput(train_fn, trial_params, res, targets, opts.probe_s)
                steps = budget_steps(opts.budget_s, fps, trial_params.train.n_steps * n_envs)
                trial.set_user_attr("steps_per_s", round(fps, 1))
                trial.set_user_attr("steps", steps)
                client.log_metric(run_id, "tune_probe_steps_per_s", fps)
                client.log_param(run_id, "tune.steps", steps)
                trial_params = trial_params.model_copy(
                    update={"train": trial_params.train.model_copy(update={"total_steps": steps})}
                )
            for s in range(opts.seeds):
                seed_params = trial_params.model_copy(update={"seed": trial_params.seed + s})
                _, res = runs.resolve(seed_params, decision)

                reported: set[int] = set()
                senders.append(tracking.MetricSender(client, run_id))

                def on_iteration(row: dict, s: int = s, reported: set[int] = reported) -> None:
                    senders[-1].add(row, int(row["step"]))
                    # report on a common grid, percent of the step budget, so trials with other
                    # n_envs (other steps per update) are compared at the same progress
                    percent = min(100, int(100 * row["step"] / steps))
                    if s > 0 or math.isnan(row["success_rate"]) or percent in reported:
                        return
                    reported.add(percent)
                    trial.report(row["success_rate"], percent)
                    if trial.should_prune():
                        raise prune(f"median pruner at {percent}% of the steps")

                _, bundle = train_fn(seed_params, res, targets, None, lambda *_: None, on_iteration, progress=False)
                policy = policy_from_bundle(bundle, "cpu")
                radius = params.tune.radius
                episodes = params.tune.eval_episodes
                metrics = evaluate_batched(policy, seed_params, targets, episodes, seed=1000 + s, radius=radius)
                scores.append(metrics[objective_key(radius)])
        except optuna.TrialPruned:
            raise
        except Exception as err:
            if is_out_of_memory(err):
                excess = max(1.0, (opts.vram_limit_mb or estimate) * 0.1)
                raise prune(f"out of memory: {str(err).splitlines()[0][:120]}", excess) from None
            client.set_tag(run_id, "trial_state", "FAIL")
            tracking.end_run(run_id, "FAILED", opts.root)
            raise
        finally:
            for sender in senders:
                sender.close()
        score = sum(scores) / len(scores)
        if opts.vram_limit_mb is not None:  # constraints are write-once: feasible ones set at the end
            trial.set_constraint("vram_excess_mb", estimate - opts.vram_limit_mb)
        client.log_metric(run_id, "heldout_success_rate", score)
        client.set_tag(run_id, "objective", f"held-out {objective_key(params.tune.radius)} (twin)")
        client.set_tag(run_id, "trial_state", "COMPLETE")
        tracking.end_run(run_id, root=opts.root)
        return score

    return objective


def _step_aside_if_surplus(trial: optuna.Trial, total: int) -> None:
    """If two workers raced for the last slot, the higher-numbered trial does no work."""
    others = [
        t
        for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if t.number < trial.number
    ]
    if len(others) >= total:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"trial {trial.number}: the study already has {total} trials")


def run_worker(
    params: Params,
    opts: TuneOptions,
    decision: Placement,
    train_fn: Callable[..., tuple[dict, dict]] | None = None,
) -> optuna.Study:
    """Run trials until the study has `opts.trials` finished ones (or the timeout passes)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_objective(params, opts)
    study = open_study(params, opts)
    parent_id = parent_run(study, params, opts)
    objective = make_objective(params, opts, decision, parent_id, train_fn)
    deadline = None if opts.timeout_s is None else time.monotonic() + opts.timeout_s
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=opts.trials, desc=f"study {opts.study_name}", unit="trial")
    closed: set[str] = set()
    while True:
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial: FAIL, then retried
        close_killed_runs(study, opts, closed)
        c = counts(study)
        if bar is not None:
            bar.n = min(c["finished"], opts.trials)
            bar.set_postfix(pruned=c["pruned"], running=c["active"], refresh=False)
            bar.refresh()
        if c["finished"] >= opts.trials or (deadline is not None and time.monotonic() > deadline):
            break
        if c["waiting"] == 0 and c["finished"] + c["active"] >= opts.trials:
            time.sleep(opts.poll_s)  # the last trials run elsewhere; wait for them (or their heartbeat)
            continue
        # optimize() takes a waiting retry first: nobody else may be left to run it
        study.optimize(objective, n_trials=1, catch=(SurplusTrial,), gc_after_trial=True)
    if bar is not None:
        bar.close()
    close_killed_runs(study, opts, closed)
    c = counts(study)
    if c["finished"] >= opts.trials and c["active"] == 0:  # the study is done: so is its parent run
        tracking.retry(lambda: tracking.end_run(parent_id, "FINISHED", opts.root), "ending the study's run")
    return study


def close_killed_runs(study: optuna.Study, opts: TuneOptions, closed: set[str]) -> None:
    """End KILLED the MLflow runs of failed trials that stayed RUNNING (their worker was killed)."""
    client = tracking.client(opts.root)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if not run_id or run_id in closed:
            continue
        closed.add(run_id)
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "trial_state", "FAIL")
                tracking.end_run(run_id, "KILLED", opts.root)
        except Exception:  # noqa: BLE001 - the run is gone or the store is away: nothing to close now
            closed.discard(run_id)


def summarise(study: optuna.Study, out_dir: Path, space: dict[str, Any] | None = None) -> dict[str, Any]:
    """best_params.yaml, optimisation-history and importance plots; returns the summary. `space`
    (tune.space) adds its `also` copies to the values to promote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": trial_values(t.params, space),
                "reason": t.user_attrs.get("prune_reason", ""),
                "estimate_mb": t.user_attrs.get("estimate_mb"),
                "steps": t.user_attrs.get("steps"),
                "steps_per_s": t.user_attrs.get("steps_per_s"),
            }
        )
    summary: dict[str, Any] = {"study": study.study_name, "trials": rows, **counts(study)}
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is not None:
        values = trial_values(best.params, space)
        if best.user_attrs.get("steps"):  # a budget trial: promote its step count too
            values["train.total_steps"] = best.user_attrs["steps"]
        summary["best"] = {
            "number": best.number,
            "heldout_success_rate": best.value,
            "params": values,
            "promote": promote_command(values),
        }
        files.write_text(out_dir / "best_params.yaml", yaml.safe_dump(summary["best"], sort_keys=False))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete:
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.figure.set_size_inches(7, 4)
        ax.figure.tight_layout()
        ax.figure.savefig(out_dir / "optimization_history.png", dpi=110)
        plt.close(ax.figure)
    if len(complete) >= 3:
        try:
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
            ax.figure.set_size_inches(7, 4)
            ax.figure.tight_layout()
            ax.figure.savefig(out_dir / "param_importances.png", dpi=110)
            plt.close(ax.figure)
        except (RuntimeError, ValueError) as err:  # e.g. all trials identical
            summary["importance_error"] = str(err)
    return summary
