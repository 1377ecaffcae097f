"""Benchmark harness: record schema, rate and ratio arithmetic, FLOP counting, GPU-check dry run.

Smoke tests on tiny settings; they never assert timing thresholds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from kubeclr.bench import article, measure
from kubeclr.bench import gpu as bench_gpu
from kubeclr.bench import throughput as bench
from kubeclr.cli import main as cli_main
from kubeclr.config import AugmentConfig, load_config
from kubeclr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.width=4", "model.proj_dim=16", "pretrain.batch_size=8", "augment.size=16", "eval.batch_size=16"]
RATE_KEYS = {"step", "limit", "seed", "augment_ours", "augment_pil", "augment_pil_loader", "features"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_settings_from_env_and_overrides(monkeypatch):
    s = measure.BenchSettings.from_env({"KUBECLR_BENCH_REPEATS": "5", "KUBECLR_BENCH_WORKERS": "0"}, steps=7)
    assert (s.repeats, s.workers, s.steps, s.warmup) == (5, 0, 7, 1)
    assert s.loader_workers() == 0
    monkeypatch.setattr(measure, "usable_cpus", lambda: 2)  # a pod's 2 CPUs on a bigger node
    assert measure.BenchSettings(workers=-1).loader_workers() == 2
    monkeypatch.setattr(measure, "usable_cpus", lambda: 64)
    assert measure.BenchSettings(workers=-1).loader_workers() == 4
    with pytest.raises(ConfigError, match="KUBECLR_BENCH_STEPS"):
        measure.BenchSettings.from_env({"KUBECLR_BENCH_STEPS": "two"})
    with pytest.raises(ConfigError, match="repeats"):
        measure.BenchSettings.from_env({}, repeats=0)


def test_measure_counts_images_over_synchronised_wall_time(monkeypatch):
    """A fake clock that advances 0.25 s per call: rate = calls × images / (calls × 0.25)."""
    clock = {"t": 100.0}
    calls = []

    def call():
        calls.append(1)
        clock["t"] += 0.25

    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["t"])
    rates = measure.measure(call, 64, warmup=2, repeats=3, calls=4, device=torch.device("cpu"))
    assert len(calls) == 2 + 3 * 4
    assert rates == pytest.approx([4 * 64 / (4 * 0.25)] * 3)


def test_cli_bench_writes_record_with_ratios_from_measured_rates(tmp_path, monkeypatch, capsys):
    for name, value in {"WARMUP": 1, "REPEATS": 2, "STEPS": 1, "WORKERS": 1, "IMAGES": 16}.items():
        monkeypatch.setenv(f"KUBECLR_BENCH_{name}", str(value))
    out = tmp_path / "bench.json"
    sets = [a for kv in TINY for a in ("--set", kv)]
    assert cli_main(["bench", "--device", "cpu", "--preset", "smoke", *sets, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for label in ("(a) our pretraining step", "(b) compute limit", "(c) seed baseline", "a/b ratio_step_vs_limit"):
        assert label in table

    rec = json.loads(out.read_text())
    assert {
        "date",
        "device",
        "device_name",
        "torch",
        "config",
        "settings",
        "images_per_second",
        "ratio_step_vs_limit",
        "ratio_step_vs_seed",
        "peak_host_memory_mb",
    } <= set(rec)
    assert rec["device"] == "cpu" and rec["torch"] == torch.__version__
    assert rec["config"]["model"]["width"] == 4 and rec["config"]["pretrain"]["batch_size"] == 8
    assert rec["settings"]["repeats"] == 2 and rec["workers"] == 1
    ips, reps = rec["images_per_second"], rec["repeats"]
    assert set(ips) == RATE_KEYS == set(reps)
    for key in RATE_KEYS:
        assert len(reps[key]) == 2 and all(r > 0 for r in reps[key])
        assert ips[key] == pytest.approx(statistics.median(reps[key]))
    assert rec["ratio_step_vs_limit"] == pytest.approx(ips["step"] / ips["limit"])
    assert rec["ratio_step_vs_seed"] == pytest.approx(ips["step"] / ips["seed"])
    assert rec["seconds_per_epoch"] == pytest.approx(50_000 / ips["step"])
    assert rec["peak_host_memory_mb"]["self"] > 10


def _resnet18_cifar_forward_flops(w: int, proj: int, size: int = 32) -> tuple[int, int]:
    """(forward FLOPs of encoder + MLP head per view, FLOPs of conv1) from the architecture, 2 FLOPs per MAC."""

    def conv(cin, cout, k, out_side):
        return 2 * cin * cout * k * k * out_side * out_side

    first = conv(3, w, 3, size)
    total, cin, side = first, w, size
    for stage, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
        stride = 1 if stage == 0 else 2
        side //= stride
        total += conv(cin, cout, 3, side) + conv(cout, cout, 3, side)  # block 1
        if stride != 1 or cin != cout:
            total += conv(cin, cout, 1, side)  # downsample
        total += 2 * conv(cout, cout, 3, side)  # block 2
        cin = cout
    d = 8 * w
    total += 2 * d * d + 2 * d * proj  # head: Linear(d,d), Linear(d,proj)
    return total, first


def test_flops_per_image_matches_architecture_oracle():
    """fwd+bwd of two views = 2 × (3 × forward − conv1's input gradient, which is never computed)."""
    cfg = load_config("smoke", None, ["model.width=8", "model.proj_dim=16", "augment.size=32"])
    fwd, conv1 = _resnet18_cifar_forward_flops(8, 16)
    assert bench_gpu.flops_per_image(cfg, torch.device("cpu")) == pytest.approx(2 * (3 * fwd - conv1), rel=1e-9)


def test_mfu_uses_the_peak_table(monkeypatch):
    assert bench_gpu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench_gpu.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert bench_gpu.peak_flops("NVIDIA H200") == 989e12
    assert bench_gpu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench_gpu.peak_flops("NVIDIA GeForce RTX 4090") is None
    monkeypatch.setattr(bench_gpu, "describe_device", lambda device: "NVIDIA A100-SXM4-40GB")
    assert bench_gpu.mfu(2e9, 31_200.0, torch.device("cuda")) == pytest.approx(2e9 * 31_200 / 312e12)
    assert bench_gpu.mfu(2e9, 1.0, torch.device("cpu")) is None


def test_gpu_check_script_runs_whole_and_dry_on_cpu(tmp_path):
    """``bash benchmarks/gpu_check.sh --dry-run``: every measurement of the GPU check, tiny, compiled, on the CPU."""
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "run_cpu.sh")], check=True)
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "GPU_CHECK_DIGITS_SEEDS": "0"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--arch", "resnet18"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (gpu_json,) = tmp_path.glob("gpu-cpu-*.json")
    assert len(list(tmp_path.glob("gpu-cpu-*.md"))) == 1
    rec = json.loads(gpu_json.read_text())["archs"]["resnet18"]
    assert rec["config"]["pretrain"]["precision"] == "bf16" and rec["config"]["model"]["stem"] == "cifar"
    compiled, eager = rec["ours_compiled"], rec["ours_eager"]
    assert compiled["compile"]["compiled"] and not eager["compile"]["compiled"]
    assert compiled["compile"]["graph_breaks"] == 0 and compiled["compile"]["recompiles"] == 0
    assert compiled["compile_seconds"] > 0 and eager["compile_seconds"] == 0
    assert rec["flops_per_image"] > 0 and compiled["mfu"] is None  # no bf16 peak for a CPU
    assert set(rec["baselines"]) >= {"limit_compiled", "limit_eager"} and any(
        k.startswith("seed_") for k in rec["baselines"]
    )
    assert rec["ratios"]["a_over_b"] == pytest.approx(
        compiled["images_per_second"] / rec["baselines"]["limit_compiled"]
    )
    assert set(rec["phase_ms"]) == {"augmentation", "forward", "loss", "backward", "optimiser"}
    assert all(v >= 0 for v in rec["phase_ms"].values()) and sum(rec["phase_ms"].values()) > 0
    (digits_json,) = tmp_path.glob("digits-device-dry-run-*.json")
    digits = json.loads(digits_json.read_text())
    assert digits["device"] == "cpu" and 0 <= digits["summary"]["probe_linear_top1"]["mean"] <= 1


def test_interleaved_repeats_follow_each_epoch_of_the_step_and_skip_the_warm_up():
    calls = []

    def repeat(name):
        return lambda warming: calls.append((name, warming)) or ([] if warming else [float(len(calls))])

    inter = bench._Interleaved({"limit": repeat("limit"), "seed": repeat("seed")}, warm=1)
    for epoch in (1, 2, 3):
        calls.append(("step", epoch))
        inter.on_epoch_end({"epoch": epoch})
    assert calls == [
        ("step", 1),
        ("limit", True),
        ("seed", True),
        ("step", 2),
        ("limit", False),
        ("seed", False),
        ("step", 3),
        ("limit", False),
        ("seed", False),
    ]
    assert inter.rates == {"limit": [5.0, 8.0], "seed": [6.0, 9.0]}


def test_pil_pipeline_is_the_seed_articles_recipe():
    """The baseline (c) augments as the seed article does: torchvision's PIL transforms, SimCLR's parameters."""
    cfg = AugmentConfig(blur=True)
    pipe = article.pil_pipeline(cfg, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
    image = torch.randint(0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pil_image = Image.fromarray(image.numpy())
    torch.manual_seed(0)
    out = pipe(pil_image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    names = [type(t).__name__ for t in pipe.transforms]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "RandomApply",
        "RandomGrayscale",
        "RandomApply",
        "ToTensor",
        "Normalize",
    ]
    jitter = pipe.transforms[2].transforms[0]
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == pytest.approx((-0.1, 0.1))
    assert pipe.transforms[2].p == 0.8
