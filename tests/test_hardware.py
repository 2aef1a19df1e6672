"""The device layer on a CPU-only machine: fake DirectML modules, placement, stable output, Adam."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from rlcore.algos.ppo import adam
from rlcore.algos.ppo.flat import FlatParameters
from rlcore.config.schema import HardwareConfig
from rlcore.pipeline import placement
from rlcore.runtime import devices
from rlcore.runtime import probes as hw
from tests.helpers import run

ROOT = Path(__file__).resolve().parents[1]


def importer_for(module):
    def importer(name):
        assert name == "torch_directml"
        if isinstance(module, BaseException):
            raise module
        return module

    return importer


def fake_dml(available=True, raises=None):
    mod = types.SimpleNamespace()

    def is_available():
        if raises:
            raise raises
        return available

    mod.is_available = is_available
    mod.device_count = lambda: 1
    mod.device = lambda i: torch.device("cpu")  # a working fake backed by the CPU
    mod.device_name = lambda i: "Fake Radeon 780M"
    mod.has_float64_support = lambda i: False
    return mod


def test_directml_import_oserror_is_a_reason():
    [probe] = hw.probe_directml(importer_for(OSError("libd3d12.so: cannot open shared object file")))
    assert not probe.usable and "OSError" in probe.reason and "libd3d12" in probe.reason


def test_directml_is_available_raising_is_a_reason():
    [probe] = hw.probe_directml(importer_for(fake_dml(raises=RuntimeError("no adapter"))))
    assert not probe.usable and "RuntimeError" in probe.reason and "no adapter" in probe.reason
    [probe] = hw.probe_directml(importer_for(fake_dml(available=False)))
    assert not probe.usable and "False" in probe.reason


def test_working_fake_directml_probe():
    [probe] = hw.probe_directml(importer_for(fake_dml()))
    assert probe.usable and probe.device == "directml:0" and probe.name == "Fake Radeon 780M"
    caps = probe.capabilities
    assert not caps.float64 and not caps.foreach and not caps.synchronize and not caps.peak_memory
    assert probe.stable_dict()["memory_total_mb"] == "unknown"  # DirectML gives no totals


def test_probe_all_never_raises_and_cpu_is_usable():
    probes = hw.probe_all(importer_for(ImportError("No module named 'torch_directml'")))
    backends = {p.backend for p in probes}
    assert {"cpu", "directml", "mps"} <= backends and ({"cuda", "rocm"} & backends)
    cpu = next(p for p in probes if p.backend == "cpu")
    assert cpu.usable and cpu.capabilities.float64
    assert all(p.reason for p in probes)


def _probes():
    cpu = hw.probe_cpu()
    gpu = hw.Probe(
        "cuda", "cuda:0", True, "smoke test passed", "Fake GPU", 8000.0, 7000.0, hw.Capabilities(peak_memory=True)
    )
    dml = hw.Probe("directml", None, False, "torch_directml not importable: OSError: x")
    return [cpu, gpu, dml]


def per_sample(cpu_update: float, cpu_env: float, gpu_update: float, gpu_env: float) -> dict:
    """Injected timings: seconds per sample of the update and the env, on the CPU and a GPU."""
    return {
        "cpu": {"update_sample_s": cpu_update, "env_sample_s": cpu_env},
        "cuda:0": {"update_sample_s": gpu_update, "env_sample_s": gpu_env},
    }


def test_placement_from_injected_timings():
    cfg = HardwareConfig()
    # GPU much faster at both: chosen for both, VRAM limit from total x safety fraction
    p = placement.choose_placement(
        _probes(),
        {
            "cpu": {"update_sample_s": 0.1, "env_sample_s": 0.01},
            "cuda:0": {"update_sample_s": 0.01, "env_sample_s": 0.001},
        },
        cfg,
    )
    assert (p.policy_device, p.env_device) == ("cuda:0", "cuda:0")
    assert p.vram_limit_mb == pytest.approx(8000 * cfg.vram_safety_fraction)
    assert p.n_envs_twin >= 1024
    # small MLP: CPU wins the update, GPU wins the env
    p = placement.choose_placement(
        _probes(),
        {
            "cpu": {"update_sample_s": 0.002, "env_sample_s": 0.01},
            "cuda:0": {"update_sample_s": 0.003, "env_sample_s": 0.001},
        },
        cfg,
    )
    assert (p.policy_device, p.env_device) == ("cpu", "cuda:0")
    # GPU only slightly faster (below the margin): CPU kept, and the reason says so
    p = placement.choose_placement(
        _probes(),
        {
            "cpu": {"update_sample_s": 0.010, "env_sample_s": 0.01},
            "cuda:0": {"update_sample_s": 0.009, "env_sample_s": 0.009},
        },
        cfg,
    )
    assert p.policy_device == "cpu" and any("less than 1.2x faster" in r for r in p.reasons)
    assert any(r.startswith("directml: skipped") for r in p.reasons)
    # explicit override of limits and sizes
    p = placement.choose_placement(_probes(), {}, HardwareConfig(device="cuda:0", vram_limit_mb=1000, n_envs_twin=512))
    assert (p.policy_device, p.vram_limit_mb, p.n_envs_twin) == ("cuda:0", 1000, 512)


def timings(cpu: float, gpu: float) -> dict[str, dict[str, float]]:
    return {
        "cpu": {"update_sample_s": cpu, "env_sample_s": cpu},
        "cuda:0": {"update_sample_s": gpu, "env_sample_s": gpu},
    }


@pytest.mark.parametrize("ratio", [1.05, 1.15, 1.19])  # the other device faster, within the 1.2 margin
def test_decision_near_the_margin_does_not_flip(ratio):
    """Noisy timings near the margin keep the previous decision, whichever device it was."""
    cfg = HardwareConfig()
    on_gpu = {"policy_device": "cuda:0", "env_device": "cuda:0"}
    on_cpu = {"policy_device": "cpu", "env_device": "cpu"}
    # the GPU was chosen last time; now the CPU times slightly faster: the GPU stays
    p = placement.choose_placement(_probes(), timings(1.0, ratio), cfg, previous=on_gpu)
    assert (p.policy_device, p.env_device) == ("cuda:0", "cuda:0")
    assert any("kept (the previous choice)" in r for r in p.reasons)
    # the CPU was chosen last time; now the GPU times slightly faster: the CPU stays
    p = placement.choose_placement(_probes(), timings(ratio, 1.0), cfg, previous=on_cpu)
    assert (p.policy_device, p.env_device) == ("cpu", "cpu")
    # a run after another with the same noisy timings agrees with it
    again = placement.choose_placement(_probes(), timings(ratio, 1.0), cfg, previous=p.to_dict())
    assert again.to_dict() == p.to_dict()


def test_decision_changes_when_the_other_device_wins_by_the_margin():
    cfg = HardwareConfig()
    p = placement.choose_placement(
        _probes(), timings(1.0, 1.3), cfg, previous={"policy_device": "cuda:0", "env_device": "cuda:0"}
    )
    assert (p.policy_device, p.env_device) == ("cpu", "cpu")
    p = placement.choose_placement(
        _probes(), timings(1.3, 1.0), cfg, previous={"policy_device": "cpu", "env_device": "cpu"}
    )
    assert (p.policy_device, p.env_device) == ("cuda:0", "cuda:0")


def test_hardware_stage_times_what_training_runs_and_keeps_its_decision(tmp_path):
    """Each device's timing is the whole update and env at that device's own n_envs, and the
    decision is also kept beside out/hardware.json, where DVC's removal of outputs leaves it."""
    out = tmp_path / "hw.json"
    proc = hardware_stage(out, "train.actor_hidden=[64,64]", "train.critic_hidden=[32,32]")
    assert proc.returncode == 0, proc.stderr
    kept = json.loads(out.with_name("hardware_timings.json").read_text())
    cpu = kept["timings"]["cpu"]
    assert cpu["n_envs"] == 256 and cpu["minibatch"] == 256 * 16 // 4
    assert cpu["update_sample_s"] == pytest.approx(cpu["update_s"] / (256 * 16))
    assert kept["decision"] == json.loads(out.read_text())["decision"]
    out.unlink()  # as DVC removes a stage's outputs before running it
    assert hardware_stage(out).returncode == 0
    assert json.loads(out.read_text())["decision"]["policy_device"] == "cpu"


def test_placement_times_the_update_training_runs(monkeypatch):
    """time_update runs PPO.update itself (fused or autograd as training picks, both networks)."""
    from rlcore.algos.ppo.algorithm import PPO
    from rlcore.config.schema import Params

    seen = []
    update = PPO.update

    def spy(self, storage, batch):
        seen.append((self.fused is not None, [layer.out_features for layer in self.model.critic[::2]], batch))
        return update(self, storage, batch)

    monkeypatch.setattr(PPO, "update", spy)
    params = Params.model_validate({"train": {"actor_hidden": [64, 64], "critic_hidden": [32, 32]}})
    assert placement.time_update(torch.device("cpu"), params, 27, 6, 64, repeats=1) > 0
    assert seen[0] == (False, [32, 32, 1], 64 * 16 // 4)  # unequal widths: the autograd path
    seen.clear()
    params = Params.model_validate({"train": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]}})
    placement.time_update(torch.device("cpu"), params, 27, 6, 64, repeats=1)
    assert seen[0][0] is True  # equal widths and a known activation: the fused path


def test_explicit_unusable_device_gives_probe_reason():
    with pytest.raises(hw.HardwareError, match="'directml' is not usable: torch_directml not importable"):
        placement.choose_placement(_probes(), {}, HardwareConfig(device="directml"))
    with pytest.raises(hw.HardwareError, match="'mps' is not usable: no such device"):
        placement.choose_placement(_probes(), {}, HardwareConfig(device="mps"))


def test_portable_adam_matches_torch_adam():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ELU(), torch.nn.Linear(16, 3))
    mine = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ELU(), torch.nn.Linear(16, 3))
    mine.load_state_dict(ref.state_dict())
    opt_ref = adam.make_adam(ref.parameters(), 1e-2, hw.Capabilities(foreach=True, fused_adam=False))
    opt_mine = adam.make_adam(mine.parameters(), 1e-2, hw.Capabilities(foreach=False))
    assert isinstance(opt_mine, adam.PortableAdam) and isinstance(opt_ref, torch.optim.Adam)
    for _ in range(50):
        x = torch.randn(32, 5)
        for model, opt in ((ref, opt_ref), (mine, opt_mine)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(ref.parameters(), mine.parameters()):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert not torch.allclose(ref[0].weight, torch.nn.Linear(5, 16).weight)


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(1)
    a = torch.nn.Linear(4, 4)
    b = torch.nn.Linear(4, 4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 4) * 10
    flat = FlatParameters(b)  # the PPO update's clipping: one flat gradient buffer
    for m in (a, b):
        m(x).square().sum().backward()
    norm_ref = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5, foreach=False)
    norm = flat.clip_grad_norm(0.5)
    assert torch.allclose(norm, norm_ref)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def hardware_stage(out, *overrides: str):
    args = ["--params", str(ROOT / "params.yaml"), "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    return run([sys.executable, str(ROOT / "stages" / "hardware.py"), *args], ROOT, check=False)


def test_hardware_json_is_byte_identical_across_runs(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}" / "hardware.json"
        proc = hardware_stage(out, "hardware.n_envs_twin=256", "train.minibatch_size=256")
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
        assert json.loads(out.with_name("hardware_timings.json").read_text())["timings"]["cpu"]["update_s"] > 0
    assert outs[0] == outs[1]
    report = json.loads(outs[0])
    assert report["decision"]["policy_device"] == "cpu"
    assert {p["backend"] for p in report["probes"]} >= {"cpu", "directml", "mps"}


def test_explicit_unusable_device_stage_error(tmp_path):
    proc = hardware_stage(tmp_path / "hw.json", "hardware.device=directml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "hardware.device = 'directml' is not usable: torch_directml not importable" in proc.stderr


def test_torch_threads_restores_the_count():
    torch.set_num_threads(1)
    with devices.torch_threads(devices.cpu_cores()):
        assert torch.get_num_threads() == devices.cpu_cores()
    assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), devices.torch_threads(2):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 1
    with devices.torch_threads(None):
        assert torch.get_num_threads() == 1


def test_bullet_update_gets_every_core_rollout_one(small_params, small_cache, monkeypatch, tmp_path):
    """With PyBullet worker processes, the rollout runs on one torch thread (the workers own the
    cores) and the update on every core (the workers sleep), when no other rlcore job runs (an
    empty job-slot folder: the test suite's other worker may be training)."""
    from rlcore.runtime import sharing

    monkeypatch.setenv(sharing.JOBS_DIR_ENV, str(tmp_path / "jobs"))
    from rlcore.algos.ppo.algorithm import PPO
    from rlcore.algos.ppo.trainer import Trainer
    from rlcore.envs.factory import make_env

    params = small_params.model_copy(
        update={
            "env": small_params.env.model_copy(update={"backend": "physics"}),
            "train": small_params.train.model_copy(update={"n_steps": 4}),
        }
    )
    seen = []
    update = PPO.update
    monkeypatch.setattr(PPO, "update", lambda self, *a: (seen.append(torch.get_num_threads()), update(self, *a))[1])
    cpu = torch.device("cpu")
    env = make_env(params, small_cache, 4, cpu, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(params, env, cpu, hw.capabilities(cpu))
        trainer.train(progress=False, total_steps=32)
        assert torch.get_num_threads() == 1
    finally:
        env.close()
        torch.set_num_threads(threads)
    expected = devices.cpu_cores() if env.workers > 1 else 1
    assert seen == [expected] * 2
