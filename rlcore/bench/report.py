"""The report stage's content: figures and report.md from the measurements (rlcore.bench.report_stage.measure)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlcore.bench.rounds import machine_text  # noqa: E402
from rlcore.evaluation.plots import distance_cdf


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def figures(
    results: dict[str, Any], curve: Path, episodes: Path, out_dir: Path, engine: str, radii: list[float]
) -> list[str]:
    """PNG figures of the benchmarks that ran, the training curve and the evaluation (the
    final-distance CDF, policy and reference, `radii` marked); returns their file names. `engine`
    names the physics engine of the evaluation ("PyBullet", "MuJoCo")."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    if "env" in results:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for kind in ("dummy", "subproc"):
            _throughput_line(ax, [r for r in results["env"]["rows"] if r["kind"] == kind], f"SB3 {kind}")
        single = next(r["fps"] for r in results["env"]["rows"] if r["kind"] == "single")
        ax.axhline(single, color="gray", ls="--", label="single env")
        ax.set(
            xlabel="n_envs", ylabel="env steps/s", title=f"{engine} env throughput", xscale="log", xticks=[1, 2, 4, 8]
        )
        ax.legend()
        names.append(_save(fig, out_dir, "env_throughput.png"))

    if "batched" in results:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for device in sorted({r["device"] for r in results["batched"]["rows"]}):
            _throughput_line(ax, [r for r in results["batched"]["rows"] if r["device"] == device], device)
        ax.set(xlabel="n_envs", ylabel="env steps/s", title="Batched twin throughput", xscale="log", yscale="log")
        ax.legend()
        names.append(_save(fig, out_dir, "batched_throughput.png"))

    if "ppo" in results:
        names.append(_ppo_figure(results["ppo"], out_dir))

    rows = _read_csv(curve)
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        steps = [float(r["step"]) for r in rows]
        ax.plot(
            steps,
            [float(r["success_rate"]) if r["success_rate"] not in ("", "nan") else float("nan") for r in rows],
            label="success rate",
        )
        ax.plot(steps, [float(r["curriculum_level"]) / 2 for r in rows], ls="--", label="curriculum level / 2")
        ax.set(xlabel="env steps", ylabel="", title="Training", ylim=(0, 1.05))
        ax.legend()
        names.append(_save(fig, out_dir, "training_curve.png"))

    rows = _read_csv(episodes)
    if rows:
        distance_cdf(rows, radii, out_dir / "eval_cdf.png", f"Held-out final distance ({engine})")
        names.append("eval_cdf.png")
    return names


def _ppo_figure(ppo: dict[str, Any], out_dir: Path) -> str:
    """rlcore vs SB3 steps/s, and where rlcore's time per rollout step goes."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    axes[0].bar(
        ["rlcore", f"SB3 ({ppo['sb3_vec_env']})"],
        [ppo["fps_rlcore"], ppo["fps_sb3"]],
        yerr=_error_bars(
            [{"fps": ppo["fps_rlcore"], "spread": ppo["rlcore"]}, {"fps": ppo["fps_sb3"], "spread": ppo["sb3"]}]
        ),
        capsize=4,
        color=["C0", "C1"],
    )
    axes[0].set(ylabel="steps/s", title=f"PPO end to end ({ppo['ratio_rlcore_vs_sb3']:.2f}x)")
    split = ppo["time_split_per_step"]
    axes[1].bar(
        ["env", "inference", "update"], [split["env_s"] * 1e3, split["inference_s"] * 1e3, split["update_s"] * 1e3]
    )
    axes[1].set(ylabel="ms per rollout step", title="Where rlcore's time goes")
    return _save(fig, out_dir, "ppo_comparison.png")


def _throughput_line(ax: Any, rows: list[dict[str, Any]], label: str) -> None:
    """steps/s against n_envs: the medians, with bars to the slowest and fastest round."""
    ax.errorbar(
        [r["n_envs"] for r in rows],
        [r["fps"] for r in rows],
        yerr=_error_bars(rows),
        marker="o",
        capsize=3,
        label=label,
    )


def _error_bars(rows: list[dict[str, Any]]) -> list[list[float]]:
    """Matplotlib's asymmetric error bars: from each median down to the slowest round, up to the fastest."""
    return [[r["fps"] - r["spread"].low for r in rows], [r["spread"].high - r["fps"] for r in rows]]


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _interval(evaluation: dict[str, Any], key: str) -> str:
    """`94.5% (95% CI 90.4-96.9%)`, or the bare rate for files written before intervals."""
    low, high = evaluation.get(f"{key}_ci_low"), evaluation.get(f"{key}_ci_high")
    text = f"{evaluation[key]:.1%}"
    return text if low is None or high is None else f"{text} (95% CI {low:.1%}-{high:.1%})"


def _spread(figure: Any) -> str:
    return f"{figure.low:,.0f}-{figure.high:,.0f} ({figure.spread:.0%})"


def markdown(
    results: dict[str, Any],
    train: dict[str, Any],
    evaluation: dict[str, Any],
    images: list[str],
    hardware: dict[str, Any],
    extra: list[str] | None = None,
) -> str:
    """report.md: this run, then the sections of the benchmarks that ran (report.benchmarks)."""
    lines = ["# rlcore report", ""] + _run_lines(train, evaluation)
    if "ppo" in results:
        lines += _ppo_lines(results["ppo"])
    lines += _device_lines(results, hardware)
    lines += _table_lines(results)
    if not results:
        lines += ["No benchmarks ran (`report.benchmarks: []`).", ""]
    lines += extra or []
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def _run_lines(train: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """The run's own table: MLflow run, training, held-out success."""
    lines: list[str] = []
    if train:
        lines += [
            "## This run",
            "",
            "| | |",
            "|---|---|",
            f"| MLflow run | `{train.get('run_id')}` |",
            f"| algo / backend / device | {train.get('algo')} / {train.get('backend')} / {train.get('device')} |",
            f"| training | {train.get('steps'):,} steps in {train.get('wall_s')} s ({train.get('fps'):,} steps/s) |",
        ]
        if evaluation:
            lines += [
                f"| held-out success within 2 cm ({evaluation['episodes']} episodes) | "
                f"{_interval(evaluation, 'success_rate')} |",
                f"| held-out success within 5 cm | {_interval(evaluation, 'success_rate_5cm')} |",
                "| final distance median / p90 | "
                f"{evaluation['final_distance_mm_median']:.1f} / {evaluation['final_distance_mm_p90']:.1f} mm |",
            ]
            if "collision_rate" in evaluation:
                lines.append(
                    f"| episodes ended on an obstacle (workcell {train.get('workcell', '?')}) | "
                    f"{_interval(evaluation, 'collision_rate')} |"
                )
        lines.append("")
    if evaluation:
        lines += precision_lines(evaluation)
    return lines


def precision_lines(evaluation: dict[str, Any]) -> list[str]:
    """The policy beside the reference controller on every precision and motion figure of eval.json."""
    keys = [k for k in evaluation if not k.startswith(("reference_", "success_rate")) and not k.endswith("_ci_low")]
    keys = [k for k in keys if not k.endswith("_ci_high") and k != "episodes"]
    reference = "reference_episodes" in evaluation
    lines = [
        "## Precision: policy and reference controller",
        "",
        "Held-out episodes in accurate physics; the reference is the damped-least-squares controller "
        "(`eval.reference`) on the same targets and start states, with the same action interface.",
        "",
        "| | policy | reference |" if reference else "| | policy |",
        "|---|---|---|" if reference else "|---|---|",
    ]

    def cell(key: str) -> str:
        value = evaluation.get(key)
        if value is None:
            return "-"
        if f"{key}_ci_low" in evaluation:
            return _interval(evaluation, key)
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    for key in keys:
        lines.append(f"| {key} | {cell(key)} |" + (f" {cell('reference_' + key)} |" if reference else ""))
    return lines + [""]


def _ppo_lines(ppo: dict[str, Any]) -> list[str]:
    """The headline: rlcore PPO against SB3 PPO on the same env."""
    split = ppo["time_split_per_step"]
    return [
        "## Headline: rlcore PPO vs stable-baselines3 PPO",
        "",
        f"Same {ppo.get('engine', 'PyBullet')} env ({ppo['n_envs']} envs, training physics) and hyperparameters, "
        f"{ppo['steps_per_run']} steps per run. Each figure is the median of {ppo['rounds']} rounds that "
        "alternate rlcore, SB3 and a single env; the range is the slowest to the fastest round, and the "
        "spread (max - min) / median. Parallel efficiency = steps/s / (cores x single-env steps/s).",
        "",
        "| | steps/s (median) | rounds: min-max (spread) | parallel efficiency |",
        "|---|---|---|---|",
        f"| rlcore PPO ({ppo['rlcore_vec_env']} vec env; auto = shared memory) | {ppo['fps_rlcore']:,.0f} | "
        f"{_spread(ppo['rlcore'])} | {ppo['efficiency_rlcore']:.2f} |",
        f"| SB3 PPO ({ppo['sb3_vec_env']}, its faster vec env here) | {ppo['fps_sb3']:,.0f} | "
        f"{_spread(ppo['sb3'])} | {ppo['efficiency_sb3']:.2f} |",
        f"| single {ppo.get('engine', 'PyBullet')} env (this machine, {ppo['cores']} cores) | "
        f"{ppo['fps_single_env']:,.0f} | "
        f"{_spread(ppo['single_env'])} | |",
        f"| **ratio rlcore / SB3** | **{ppo['ratio_rlcore_vs_sb3']:.2f}x** | per round "
        f"{ppo['ratio_runs'].low:.2f}-{ppo['ratio_runs'].high:.2f}x | |",
        "",
        f"rlcore per rollout step: env {split['env_s'] * 1e3:.2f} ms, inference {split['inference_s'] * 1e3:.2f} ms, "
        f"update (per step) {split['update_s'] * 1e3:.2f} ms.",
        "",
    ]


def _device_lines(results: dict[str, Any], hardware: dict[str, Any]) -> list[str]:
    """Which device is fastest for the update and the batched env, and what the hardware stage chose."""
    lines = ["## Which device is faster for what", ""]
    if "update" in results:
        best_upd = max(results["update"]["rows"], key=lambda r: r["samples_per_s"])
        lines += [
            f"- PPO update: **{best_upd['device']}** is fastest here "
            f"({best_upd['samples_per_s']:,.0f} samples/s at minibatch {best_upd['minibatch']}).",
            f"- The update at the training sizes reaches **{best_upd['gflops']:,.1f} GFLOP/s**, "
            f"{best_upd['share_of_peak']:.0%} of {best_upd['device']}'s fp32 matmul peak measured in the same "
            f"rounds (torch.mm: {best_upd['matmul_peak_gflops']:,.1f} GFLOP/s); "
            f"{best_upd['flops_per_sample'] / 1e6:.2f} MFLOP per sample (epochs x forward and backward of both "
            "networks).",
        ]
    if "batched" in results:
        best_env = max(results["batched"]["rows"], key=lambda r: r["fps"])
        lines.append(
            f"- Batched env: **{best_env['device']}** is fastest here "
            f"({best_env['fps']:,.0f} env steps/s at {best_env['n_envs']} envs)."
        )
    lines += [
        f"- The hardware stage chose policy on **{hardware.get('policy_device', '?')}**, batched env on "
        f"**{hardware.get('env_device', '?')}**.",
        "",
    ]
    return lines


def _table_lines(results: dict[str, Any]) -> list[str]:
    """The env, batched-twin and update tables of the benchmarks that ran."""
    lines: list[str] = []
    for title, table, head, cells in [
        (
            "PyBullet env throughput",
            results.get("env"),
            "| vec env | n_envs |",
            lambda r: f"| {r['kind']} | {r['n_envs']} |",
        ),
        ("Batched twin", results.get("batched"), "| device | n_envs |", lambda r: f"| {r['device']} | {r['n_envs']} |"),
        (
            "PPO update throughput",
            results.get("update"),
            "| device | minibatch |",
            lambda r: f"| {r['device']} | {r['minibatch']} |",
        ),
    ]:
        if table is None:  # not in report.benchmarks
            continue
        unit = "samples/s" if title.startswith("PPO") else "steps/s"
        key = "samples_per_s" if title.startswith("PPO") else "fps"
        lines += [
            "",
            f"## {title}",
            "",
            f"Median of {table['rounds']} alternating rounds; {machine_text(table['machine'])}.",
            "",
        ]
        if title.startswith("PPO"):
            lines += [
                f"{head} {unit} | min-max (spread) | GFLOP/s | fp32 torch.mm peak | of peak |",
                "|---" * (head.count("|") + 4) + "|",
            ]
            lines += [
                f"{cells(r)} {r[key]:,.0f} | {_spread(r['spread'])} | {r['gflops']:,.1f} | "
                f"{r['matmul_peak_gflops']:,.1f} | {r['share_of_peak']:.0%} |"
                for r in table["rows"]
            ]
            continue
        lines += [f"{head} {unit} | min-max (spread) |", "|---" * (head.count("|") + 1) + "|"]
        lines += [f"{cells(r)} {r[key]:,.0f} | {_spread(r['spread'])} |" for r in table["rows"]]
    batched_rows = results["batched"]["rows"] if "batched" in results else []
    memory = [r for r in batched_rows if r["memory_per_env_kb"] is not None]
    if memory:
        lines += [
            "",
            "Batched twin memory per env: "
            + ", ".join(f"{r['device']} x{r['n_envs']}: {r['memory_per_env_kb']:.2f} KB" for r in memory)
            + ".",
        ]
    return lines


def algos_section(algos_dir: Path, out_dir: Path) -> tuple[list[str], str]:
    """The `bench algos` table as markdown and its figure copied into the report (report.algos).
    FileNotFoundError names the file when `python -m rlcore.bench algos` has not run."""
    import shutil

    from rlcore.bench.algos import text

    source = algos_dir / "algos.json"
    if not source.is_file() or not (algos_dir / "algos.png").is_file():
        raise FileNotFoundError(
            f"report.algos is true but {source} or algos.png is missing: run `python -m rlcore.bench algos`"
        )
    results = json.loads(source.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(algos_dir / "algos.png", out_dir / "algos.png")
    lines = ["", "## Algorithms on equal terms (`python -m rlcore.bench algos`)", "", "```", *text(results), "```"]
    return lines, "algos.png"


def bench_metrics(results: dict[str, Any]) -> dict[str, float]:
    """out/bench.json: the DVC metrics (medians over the rounds, spreads, parallel efficiencies) of
    the benchmarks that ran."""
    metrics: dict[str, float] = {}
    if "ppo" in results:
        ppo = results["ppo"]
        metrics.update(
            fps_rlcore=round(ppo["fps_rlcore"], 1),
            fps_sb3=round(ppo["fps_sb3"], 1),
            ratio_rlcore_vs_sb3=round(ppo["ratio_rlcore_vs_sb3"], 3),
            spread_rlcore=round(ppo["rlcore"].spread, 3),
            spread_sb3=round(ppo["sb3"].spread, 3),
            efficiency_rlcore=round(ppo["efficiency_rlcore"], 3),
            efficiency_sb3=round(ppo["efficiency_sb3"], 3),
            fps_single_env=round(ppo["fps_single_env"], 1),
            cores=ppo["cores"],
            rounds=ppo["rounds"],
        )
    if "batched" in results:
        best_batched = max(results["batched"]["rows"], key=lambda r: r["fps"])
        metrics.update(fps_batched_best=round(best_batched["fps"], 1), batched_best_n_envs=best_batched["n_envs"])
    if "update" in results:
        rows = results["update"]["rows"]
        metrics.update(
            update_gflops=round(max(r["gflops"] for r in rows), 2),
            matmul_peak_gflops=round(max(r["matmul_peak_gflops"] for r in rows), 2),
        )
    return metrics


def raw_json(results: dict[str, Any]) -> str:
    """bench_raw.json: every round of every measurement."""
    return json.dumps(results, indent=2, default=lambda o: o.to_dict() if hasattr(o, "to_dict") else float(o)) + "\n"


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
