"""The single-GPU check of issue 8: seconds per epoch, MFU and ratios for ResNet-18 and ResNet-50.

Runs :func:`kubeclr.bench.throughput.run` on synthetic CIFAR-sized data (50,000 uint8
images generated on the GPU) for each architecture with the CIFAR stem,
batch 512, bf16 autocast and channels_last, and adds model FLOP utilisation:
FLOPs of one training image (forward + backward of its two views, counted
with ``torch.utils.flop_counter.FlopCounterMode``) × images/s of our step ÷
the GPU's dense bf16 peak. Writes ``gpu-<device>-<date>.json`` and ``.md``.

Usage (what ``benchmarks/gpu_check.sh`` runs)::

    python -m kubeclr.bench.gpu --out benchmarks/results [--compile] [--dry-run]

``--dry-run`` runs the same code on the CPU with a tiny network and a few
images, so tests can exercise it without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from kubeclr.atomic import write_bytes_atomic, write_json
from kubeclr.bench import throughput as bench
from kubeclr.bench.measure import BenchSettings
from kubeclr.config import Config, load_config
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.core.model import build_model

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s (vendor data sheets), matched against the CUDA device name; first hit wins.
PEAK_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))
ARCHS = ("resnet18", "resnet50")


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


def add_mfu(record: dict[str, Any], cfg: Config, device: torch.device) -> dict[str, Any]:
    """Add ``flops_per_image``, ``peak_flops`` and ``mfu`` (of our step, a) to a bench record."""
    flops = flops_per_image(cfg, device)
    peak = peak_flops(record["device_name"]) if device.type == "cuda" else None
    record.update(
        flops_per_image=flops, peak_flops=peak, mfu=flops * record["images_per_second"]["step"] / peak if peak else None
    )
    return record


def check_config(arch: str, *, compile: bool, dry_run: bool) -> Config:
    """The measured config: the ``fast`` preset at batch 512, bf16, channels_last (tiny when ``dry_run``)."""
    sets = {
        "model.arch": arch,
        "model.stem": "cifar",
        "pretrain.batch_size": 512,
        "pretrain.precision": "bf16",
        "pretrain.channels_last": True,
        "pretrain.compile": compile,
    }
    if dry_run:
        sets.update({"model.width": 4, "model.proj_dim": 16, "pretrain.batch_size": 8, "eval.batch_size": 16})
    return load_config("fast", None, sets)


def markdown(summary: dict[str, Any]) -> str:
    """A short Markdown table of the check, for benchmarks/results/ and the README."""
    lines = [
        f"# GPU check — {summary['device_name']}, {summary['date']}",
        "",
        f"torch {summary['torch']}, synthetic {summary['images']} images, batch "
        f"{summary['batch_size']}, bf16, channels_last, compile={summary['compile']}",
        "",
        "| arch | s/epoch (a) | step img/s (a) | limit img/s (b) | seed img/s (c) | a/b | a/c | MFU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, r in summary["archs"].items():
        ips = r["images_per_second"]
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {arch} | {r['seconds_per_epoch']:.2f} | {ips['step']:.0f} | {ips['limit']:.0f} | "
            f"{ips['seed']:.0f} | {r['ratio_step_vs_limit']:.3f} | {r['ratio_step_vs_seed']:.2f} | {mfu} |"
        )
    lines += ["", "Command: `bash benchmarks/gpu_check.sh`"]
    return "\n".join(lines) + "\n"


def gpu_check(
    out_dir: str | Path, *, archs: Sequence[str] = ARCHS, compile: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Benchmark each arch and write ``gpu-<device>-<date>.json`` and ``.md`` under ``out_dir``.

    Returns:
        ``{"date", "device_name", "torch", "images", "batch_size", "compile", "archs": {arch: record}, "files"}``.

    Raises:
        ConfigError: no CUDA device (unless ``dry_run``).
    """
    device = resolve_device("cpu" if dry_run else "cuda")
    settings = (
        BenchSettings(warmup=1, repeats=1, steps=1, workers=0, images=32)
        if dry_run
        else BenchSettings.from_env(warmup=5, repeats=3, steps=20, images=bench.CIFAR_TRAIN_IMAGES)
    )
    name = describe_device(device)
    date = dt.date.today().isoformat()
    records = {}
    for arch in archs:
        cfg = check_config(arch, compile=compile, dry_run=dry_run)
        log.info("gpu check: %s on %s", arch, name)
        records[arch] = add_mfu(bench.run(cfg, device, settings), cfg, device)
        sys.stdout.write(f"== {arch}\n{bench.format_table(records[arch])}\n")
        torch.cuda.empty_cache() if device.type == "cuda" else None
    first = next(iter(records.values()))
    summary = {
        "date": date,
        "device_name": name,
        "torch": torch.__version__,
        "images": settings.images,
        "batch_size": first["config"]["pretrain"]["batch_size"],
        "compile": compile,
        "archs": records,
    }
    stem = f"gpu-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}-{date}"
    out = Path(out_dir)
    summary["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    write_json(out / f"{stem}.json", summary)
    write_bytes_atomic(out / f"{stem}.md", markdown(summary).encode())
    sys.stdout.write(markdown(summary))
    return summary


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeclr.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON and Markdown results")
    parser.add_argument("--arch", action="append", choices=ARCHS, help="architectures (default: both)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (adds compile time)")
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU run of the same code (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kubeclr.errors import UserError

    try:
        gpu_check(args.out, archs=args.arch or ARCHS, compile=args.compile, dry_run=args.dry_run)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
