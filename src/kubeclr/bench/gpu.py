"""The one-shot GPU check of issue 27: the ``fast`` preset as configured, beside eager and two baselines.

For each architecture (ResNet-18, ResNet-50; CIFAR stem, batch 512, bf16,
channels_last) on 50,000 synthetic CIFAR-sized uint8 images generated on the
device:

- (a) our pretraining step, :func:`kubeclr.core.train.train_simclr` itself,
  compiled (the preset as configured) and eager: compile seconds, steady
  seconds per epoch, images/s, MFU, peak GPU memory, graph breaks and
  recompiles, host syncs per epoch (CUDA's sync debug mode counts them);
- (b) the bare model step (forward + backward + optimiser on pre-made views),
  compiled and eager, ``steps`` (≥ 100) timed steps;
- (c) the seed article's path (PIL views from DataLoader workers, fp32) with
  4 and with all-cores workers, ``steps`` timed steps each;
- a split of one compiled step by phase (augmentation / forward / loss /
  backward / optimiser), timed with CUDA events.

MFU = FLOPs of one training image (forward + backward of its two views,
``FlopCounterMode``) × images/s ÷ the GPU's dense bf16 peak. Each
architecture's record is written to ``gpu-<device>-<date>.json|md`` as soon
as it is done, so a timeout keeps what finished.

Usage (what ``benchmarks/gpu_check.sh`` runs)::

    python -m kubeclr.bench.gpu --out benchmarks/results [--arch resnet18] [--dry-run]

``--dry-run`` runs the same code on the CPU with a tiny network and a few
images (compiled too), so the test suite exercises all of it without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from kubeclr.atomic import write_bytes_atomic, write_json
from kubeclr.bench import throughput as bench
from kubeclr.bench.measure import BenchSettings, measure, synthetic_images
from kubeclr.config import Config, load_config
from kubeclr.core import train
from kubeclr.core.augment import SimCLRAugment, paired_views
from kubeclr.core.device import autocast, describe_device, driver_version, memory_format, resolve_device
from kubeclr.core.loss import NTXentLoss
from kubeclr.core.model import build_model
from kubeclr.core.optim import build_optimizer, build_scheduler
from kubeclr.core.train import Callback, StepTimer
from kubeclr.cpus import usable_cpus

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s (vendor data sheets), matched against the CUDA device name; first hit wins.
PEAK_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))
ARCHS = ("resnet18", "resnet50")
PHASES = ("augmentation", "forward", "loss", "backward", "optimiser")  # of one step, as timed


def flops_per_image(cfg: Config, device: torch.device) -> float:
    """Model FLOPs of one training image: forward + backward of its two views through encoder + head."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg.model).to(device).train()
    n = 2  # images (4 views): BatchNorm needs more than one value per channel
    x = torch.randn(2 * n, 3, cfg.crop_size, cfg.crop_size, device=device)
    with FlopCounterMode(display=False) as counter:
        _, z = model(x)
        z.square().mean().backward()
    return counter.get_total_flops() / n


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU (H200, H100 SXM/PCIe, A100), else None."""
    return next((peak for key, peak in PEAK_BF16 if key in device_name), None)


def mfu(flops_per_image: float, images_per_second: float, device: torch.device) -> float | None:
    """Model FLOP utilisation of a step rate against the GPU's dense bf16 peak (None off a known GPU)."""
    peak = peak_flops(describe_device(device)) if device.type == "cuda" else None
    return flops_per_image * images_per_second / peak if peak else None


def check_config(arch: str, *, compile: bool, dry_run: bool) -> Config:
    """The measured config: the ``fast`` preset at batch 512, bf16, channels_last (tiny when ``dry_run``)."""
    sets = {
        "model.arch": arch,
        "model.stem": "cifar",
        "pretrain.batch_size": 512,
        "pretrain.precision": "bf16",
        "pretrain.channels_last": True,
        "pretrain.compile": compile,
        "pretrain.checkpoint_every": 0,
        "pretrain.knn_every": 0,
    }
    if dry_run:
        sets.update({"model.width": 4, "model.proj_dim": 16, "pretrain.batch_size": 8, "eval.batch_size": 16})
    return load_config("fast", None, sets)


class _SyncCount(Callback):
    """Counts host syncs in the epochs after the first (CUDA's sync debug mode warns at each one)."""

    def __init__(self, device: torch.device, caught: list) -> None:
        self.cuda, self.caught = device.type == "cuda", caught
        self.marks: list[int] = []

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.cuda and not self.marks:
            torch.cuda.set_sync_debug_mode("warn")
        self.marks.append(sum("synchronizing" in str(w.message) for w in self.caught))

    def on_train_end(self, summary: Any) -> None:
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")

    def per_epoch(self) -> float | None:
        if not self.cuda or len(self.marks) < 2:
            return None
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


def our_step(cfg: Config, images: torch.Tensor, device: torch.device, epochs: int) -> dict[str, Any]:
    """(a) ``train_simclr`` for ``epochs`` (the first warms up and compiles): its rates, cost and syncs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        syncs = _SyncCount(device, caught)
        result = train.train_simclr(
            cfg.override({"pretrain.epochs": epochs}),
            images,
            bench.CIFAR_MEAN,
            bench.CIFAR_STD,
            device=device,
            callbacks=syncs,
        )
    steady = result.history[1:] or result.history
    steps = images.shape[0] // cfg.pretrain.batch_size
    per_epoch = syncs.per_epoch()
    return {
        "images_per_second": statistics.median(r["images_per_second"] for r in steady),
        "seconds_per_epoch": statistics.median(r["seconds"] for r in steady),
        "first_epoch_seconds": result.summary["first_epoch_seconds"],
        "compile_seconds": result.summary["compile_seconds"],
        "compile": result.summary["compile"],
        "steps_per_epoch": steps,
        "host_syncs_per_epoch": per_epoch,
        "host_syncs_per_step": per_epoch / steps if per_epoch is not None else None,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
        "final_loss": result.summary["final_loss"],
    }


def phase_split(cfg: Config, images: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Device milliseconds of one compiled step by phase, after two warm-up steps.

    CUDA events between the phases (:class:`~kubeclr.core.train.StepTimer`), not the
    profiler's ``record_function`` ranges: those are host-side, and the backward's
    kernels are launched by autograd's own thread, outside them (on an H200 the
    profiler gave the backward 0 ms). The phases run in order on one stream, so
    the events' gaps are their device times.
    """
    pc, b = cfg.pretrain, cfg.pretrain.batch_size
    fmt = memory_format(device, pc.channels_last)
    model = build_model(cfg.model).to(device, memory_format=fmt).train()
    forward = torch.compile(model, dynamic=False) if pc.compile else model
    optimizer = build_optimizer(model, pc)
    scheduler = build_scheduler(optimizer, pc, steps_per_epoch=8)
    aug = SimCLRAugment(cfg.augment, bench.CIFAR_MEAN, bench.CIFAR_STD, compile=pc.compile).to(device)
    loss_fn, gen = NTXentLoss(pc.temperature), torch.Generator(device=device).manual_seed(0)

    def step(timer: StepTimer) -> None:
        timer.start()
        views = paired_views(aug, images[:b], gen).contiguous(memory_format=fmt)  # (2B, 3, S, S)
        timer.mark()  # augmentation
        with autocast(device, pc.precision):
            _, z = forward(views)
        timer.mark()  # forward
        loss = loss_fn(*z.chunk(2))
        timer.mark()  # loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        timer.mark()  # backward
        optimizer.step()
        scheduler.step()
        timer.mark()  # optimiser

    for _ in range(2):
        step(StepTimer(device, len(PHASES)))
    timer = StepTimer(device, len(PHASES))
    step(timer)
    return {name: seconds * 1000 for name, seconds in zip(PHASES, timer.seconds())}


def baselines(cfg: Config, images: torch.Tensor, device: torch.device, s: BenchSettings) -> dict[str, float]:
    """(b) the bare model step, compiled and eager; (c) the PIL DataLoader path with 4 and all-cores workers."""
    b = cfg.pretrain.batch_size
    out = {}
    for compile in (True, False):
        limit = bench.limit_step(cfg.override({"pretrain.compile": compile}), device, s)
        rates = measure(limit, b, warmup=s.warmup, repeats=1, calls=s.steps, device=device)
        out["limit_compiled" if compile else "limit_eager"] = rates[0]
    host = images[: max(b, 2048)].cpu().numpy()
    for workers in sorted({min(4, usable_cpus()), usable_cpus()}):  # the pod's CPUs, not the node's
        repeat = bench.seed_repeat(cfg, host, device, BenchSettings(steps=s.steps, workers=workers, seed=s.seed))
        out[f"seed_{workers}_workers"] = repeat()[0]
    return out


def check_arch(arch: str, device: torch.device, s: BenchSettings, dry_run: bool) -> dict[str, Any]:
    """Everything measured for one architecture (see the module docstring)."""
    fast = check_config(arch, compile=True, dry_run=dry_run)
    images = synthetic_images(s.images, fast.crop_size, device, s.seed)  # (N, 3, 32, 32) uint8
    record: dict[str, Any] = {"arch": arch, "config": fast.to_dict(), "images": s.images}
    record["ours_compiled"] = our_step(fast, images, device, epochs=1 + s.repeats)
    record["ours_eager"] = our_step(fast.override({"pretrain.compile": False}), images, device, epochs=1 + s.repeats)
    record["baselines"] = baselines(fast, images, device, s)
    record["phase_ms"] = phase_split(fast, images, device)
    flops = flops_per_image(fast, device)
    record["flops_per_image"] = flops
    record["peak_flops"] = peak_flops(describe_device(device)) if device.type == "cuda" else None
    for mode in ("ours_compiled", "ours_eager"):
        r = record[mode]
        r["mfu"] = mfu(flops, r["images_per_second"], device)
        r["seconds_per_50k_epoch"] = bench.CIFAR_TRAIN_IMAGES / r["images_per_second"]
    base = record["baselines"]
    a = record["ours_compiled"]["images_per_second"]
    record["ratios"] = {
        "a_over_b": a / base["limit_compiled"],
        "a_eager_over_b_eager": record["ours_eager"]["images_per_second"] / base["limit_eager"],
        **{f"a_over_c_{k.split('_')[1]}_workers": a / v for k, v in base.items() if k.startswith("seed_")},
    }
    return record


def markdown(summary: dict[str, Any]) -> str:
    """The check's Markdown table, for benchmarks/results/ and the README."""
    lines = [
        f"# GPU check — {summary['device_name']}, {summary['date']}",
        "",
        f"torch {summary['torch']} (CUDA {summary['cuda']}), driver {summary['driver']}; "
        f"{summary['images']} synthetic images, batch {summary['batch_size']}, bf16, channels_last",
        "",
        "| arch | mode | s/50k epoch | img/s | MFU | compile s | first epoch s | peak GB | breaks/recompiles "
        "| syncs/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    done = {arch: r for arch, r in summary["archs"].items() if "error" not in r}
    for arch, r in summary["archs"].items():
        if "error" in r:
            lines.append(f"| {arch} | failed: {r['error']} |")
    for arch, r in done.items():
        for mode in ("ours_compiled", "ours_eager"):
            m, c = r[mode], r[mode]["compile"]
            mfu = f"{m['mfu']:.1%}" if m["mfu"] is not None else "n/a"
            mem = f"{m['peak_gpu_memory_gb']:.1f}" if m["peak_gpu_memory_gb"] is not None else "n/a"
            sync = (
                f"{m['host_syncs_per_epoch']:.0f} ({m['steps_per_epoch']} steps)"
                if m["host_syncs_per_epoch"] is not None
                else "n/a"
            )
            lines.append(
                f"| {arch} | {mode.split('_')[1]} | {m['seconds_per_50k_epoch']:.2f} | {m['images_per_second']:.0f} | "
                f"{mfu} | {m['compile_seconds']:.1f} | {m['first_epoch_seconds']:.1f} | {mem} | "
                f"{c['graph_breaks']}/{c['recompiles']} | {sync} |"
            )
    lines += ["", "| arch | baseline | img/s | ratio |", "|---|---|---|---|"]
    for arch, r in done.items():
        base, ratios = r["baselines"], r["ratios"]
        lines.append(
            f"| {arch} | (b) model step, compiled | {base['limit_compiled']:.0f} | a/b {ratios['a_over_b']:.3f} |"
        )
        lines.append(
            f"| {arch} | (b) model step, eager | {base['limit_eager']:.0f} | "
            f"a/b eager {ratios['a_eager_over_b_eager']:.3f} |"
        )
        for key, rate in base.items():
            if key.startswith("seed_"):
                workers = key.split("_")[1]
                lines.append(
                    f"| {arch} | (c) PIL DataLoader, {workers} workers | {rate:.0f} | "
                    f"a/c {ratios[f'a_over_c_{workers}_workers']:.1f} |"
                )
    lines += ["", "One compiled step by phase (device ms, CUDA events):", ""]
    lines += ["| arch | " + " | ".join(PHASES) + " |", "|---" * (1 + len(PHASES)) + "|"]
    for arch, r in done.items():
        lines.append(f"| {arch} | " + " | ".join(f"{v:.2f}" for v in r["phase_ms"].values()) + " |")
    lines += ["", "Command: `bash benchmarks/gpu_check.sh`"]
    return "\n".join(lines) + "\n"


def environment(device: torch.device) -> dict[str, Any]:
    """Device name, driver, torch and CUDA versions, for every record."""
    return {
        "date": dt.date.today().isoformat(),
        "device_name": describe_device(device),
        "driver": driver_version() if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
    }


def gpu_check(out_dir: str | Path, *, archs: Sequence[str] = ARCHS, dry_run: bool = False) -> dict[str, Any]:
    """Measure each arch and (re)write ``gpu-<device>-<date>.json`` and ``.md`` after each one.

    Returns:
        ``{"date", "device_name", "driver", "torch", "cuda", "cpu_count", "usable_cpus", "images", "batch_size",
        "archs": {arch: record}, "files"}``.

    Raises:
        ConfigError: no CUDA device (unless ``dry_run``).
    """
    device = resolve_device("cpu" if dry_run else "cuda")
    s = (
        BenchSettings(warmup=1, repeats=1, steps=2, workers=0, images=32)
        if dry_run
        else BenchSettings.from_env(warmup=5, repeats=2, steps=100, images=bench.CIFAR_TRAIN_IMAGES)
    )
    summary = {**environment(device), "images": s.images, "archs": {}}
    stem = f"gpu-{re.sub(r'[^A-Za-z0-9]+', '-', summary['device_name']).strip('-').lower()}-{summary['date']}"
    out = Path(out_dir)
    summary["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    if (out / f"{stem}.json").is_file():  # the same day's other architectures stay (``--arch`` reruns one)
        summary["archs"] = json.loads((out / f"{stem}.json").read_text()).get("archs", {})
    for arch in archs:
        log.info("gpu check: %s on %s", arch, summary["device_name"])
        try:
            summary["archs"][arch] = check_arch(arch, device, s, dry_run)
        except Exception as exc:  # one-shot on a borrowed GPU: a failure must not lose the other archs
            if dry_run:
                raise
            log.exception("gpu check: %s failed", arch)
            summary["archs"][arch] = {"arch": arch, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        summary["batch_size"] = check_config(arch, compile=True, dry_run=dry_run).pretrain.batch_size
        write_json(out / f"{stem}.json", summary)  # after every arch: a timeout keeps what finished
        write_bytes_atomic(out / f"{stem}.md", markdown(summary).encode())
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sys.stdout.write(markdown(summary))
    return summary


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeclr.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON and Markdown results")
    parser.add_argument("--arch", action="append", choices=ARCHS, help="architectures (default: both)")
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU run of the same code (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kubeclr.errors import UserError

    try:
        gpu_check(args.out, archs=args.arch or ARCHS, dry_run=args.dry_run)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
