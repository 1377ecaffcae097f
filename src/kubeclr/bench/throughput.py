"""Throughput benchmark: our pretraining step against the compute limit and the seed baseline.

``simclr-pipeline bench`` measures, in one process, on one device, with the
same model and batch size:

- ``step`` (a): our full pretraining step — :func:`kubeclr.core.train.train_simclr`
  itself on device-resident synthetic data (batched on-device augmentation of
  two views, encoder + head, NT-Xent, LARS), timed per epoch;
- ``limit`` (b): the compute limit — forward + backward + optimiser step of the
  same encoder + head on pre-made view tensors with a trivial loss;
- ``seed`` (c): the seed article's path — torchvision PIL transforms in a
  ``DataLoader`` with workers, fp32 (:mod:`kubeclr.bench.article`);
- ``augment_ours`` / ``augment_pil`` / ``augment_pil_loader`` (d): two views of
  each image, by our batched module, by PIL in this process, and by PIL in
  DataLoader workers;
- ``features`` (e): :func:`kubeclr.eval.features.extract_features`.

Rates count *source images* per second (one image -> two views), medians over
repeats after warm-up; the repeats of (a), (b), (c) are interleaved so a shared
machine's load hits all three alike (benchmarks/README.md has the details).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from kubeclr.atomic import write_json
from kubeclr.bench import article
from kubeclr.bench.measure import BenchSettings, measure, peak_host_memory_mb, synthetic_images
from kubeclr.config import Config
from kubeclr.core import train
from kubeclr.core.augment import SimCLRAugment, paired_views
from kubeclr.core.device import autocast, describe_device, memory_format, resolve_device
from kubeclr.core.model import build_model
from kubeclr.core.optim import build_optimizer, build_scheduler
from kubeclr.core.train import Callback
from kubeclr.eval.features import extract_features

log = logging.getLogger(__name__)

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR_TRAIN_IMAGES = 50_000
RATES = ("step", "limit", "seed", "augment_ours", "augment_pil", "augment_pil_loader", "features")


class _Interleaved(Callback):
    """After every epoch of (a), one repeat of each of (b) and (c), so a shared machine's load drifts hit all three.

    Measured one after the other, minutes apart, the three rates of a loaded
    2-core machine differed by up to 2× between repeats; interleaved, each
    repeat of (a) has a (b) and a (c) measured under the same load.
    """

    def __init__(self, others: dict[str, Callable[[bool], list[float]]], warm: int) -> None:
        self.others, self.warm = others, warm
        self.rates: dict[str, list[float]] = {name: [] for name in others}

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        for name, repeat in self.others.items():
            rates = repeat(record["epoch"] <= self.warm)  # the warm-up epoch of (a) warms (b) up too
            if record["epoch"] > self.warm:
                self.rates[name] += rates


def bench_training(
    cfg: Config, images: torch.Tensor, host_images: np.ndarray, device: torch.device, s: BenchSettings
) -> dict[str, list[float]]:
    """(a), (b) and (c), their repeats interleaved (see :class:`_Interleaved`).

    (a) is :func:`kubeclr.core.train.train_simclr` itself, one epoch of ``images / batch``
    steps per repeat after one warm-up epoch (if ``warmup``), timed by the loop
    (one sync per epoch). (b) and (c) run ``steps`` timed steps per repeat.
    """
    warm = 1 if s.warmup else 0
    b = cfg.pretrain.batch_size
    limit, seed = limit_step(cfg, device, s), seed_repeat(cfg, host_images, device, s)

    def limit_repeat(warming: bool) -> list[float]:
        if warming:
            return measure(limit, b, warmup=s.warmup, repeats=0, calls=0, device=device)
        return measure(limit, b, warmup=0, repeats=1, calls=s.steps, device=device)

    others = {"limit": limit_repeat, "seed": lambda warming: [] if warming else seed()}
    interleaved = _Interleaved(others, warm)
    run_cfg = cfg.override(
        {"pretrain.epochs": warm + s.repeats, "pretrain.checkpoint_every": 0, "pretrain.knn_every": 0}
    )
    result = train.train_simclr(run_cfg, images, CIFAR_MEAN, CIFAR_STD, device=device, callbacks=interleaved)
    return {"step": [r["images_per_second"] for r in result.history[warm:]], **interleaved.rates}


def limit_step(cfg: Config, device: torch.device, s: BenchSettings) -> Callable[[], None]:
    """(b) One step of the same model, optimiser, precision and memory format on pre-made views; loss = mean(z²)."""
    pc, b = cfg.pretrain, cfg.pretrain.batch_size
    model = build_model(cfg.model)
    fmt = memory_format(device, pc.channels_last)
    model = model.to(device, memory_format=fmt).train()
    forward = torch.compile(model) if pc.compile else model
    optimizer = build_optimizer(model, pc)
    scheduler = build_scheduler(optimizer, pc, steps_per_epoch=s.steps)
    g = torch.Generator(device=device).manual_seed(s.seed)
    views = torch.randn(2 * b, 3, cfg.crop_size, cfg.crop_size, generator=g, device=device)
    views = views.contiguous(memory_format=fmt)  # (2B, 3, S, S): two views of B images

    def step() -> None:
        with autocast(device, cfg.pretrain.precision):
            _, z = forward(views)  # (2B, proj_dim)
            loss = z.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step


def seed_repeat(
    cfg: Config, host_images: np.ndarray, device: torch.device, s: BenchSettings
) -> Callable[[], list[float]]:
    """(c) One timed repeat per call of the seed article's path: PIL views from DataLoader workers, fp32.

    Each repeat starts the loader's workers afresh and spends one untimed step
    on their start-up; the workers exit after the repeat, so they neither
    steal CPU from (a) and (b) nor hand (c) batches made while those ran.
    """
    b = cfg.pretrain.batch_size
    loader = article.pil_loader(
        host_images,
        cfg,
        CIFAR_MEAN,
        CIFAR_STD,
        batch_size=b,
        batches=1 + s.steps,
        workers=s.loader_workers(),
        pin_memory=device.type == "cuda",
        seed=s.seed,
    )
    step = article.article_step(cfg, device, steps_per_epoch=len(loader))

    def repeat() -> list[float]:
        batches = iter(loader)
        return measure(lambda: step(*next(batches)), b, warmup=1, repeats=1, calls=s.steps, device=device)

    return repeat


def two_views(
    aug: SimCLRAugment, images: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of the same batch (the positive pairs), ``(B, 3, S, S)`` each."""
    view1, view2 = paired_views(aug, images, generator).chunk(2)
    return view1, view2


def bench_augment(
    cfg: Config, images: torch.Tensor, host_images: np.ndarray, device: torch.device, s: BenchSettings
) -> dict[str, list[float]]:
    """(d) Two views per image: our batched module on ``device``, PIL in-process, PIL in DataLoader workers."""
    b = cfg.pretrain.batch_size
    aug = SimCLRAugment(cfg.augment, CIFAR_MEAN, CIFAR_STD).to(device)
    g = torch.Generator(device=device).manual_seed(s.seed)
    batch = images[:b]
    kw = dict(warmup=s.warmup, repeats=s.repeats, device=device)
    ours = measure(lambda: two_views(aug, batch, g), b, calls=s.steps, **kw)
    pil = measure(article.pil_augment_images(host_images[:b], cfg, CIFAR_MEAN, CIFAR_STD), b, calls=1, **kw)
    loader = iter(
        article.pil_loader(
            host_images,
            cfg,
            CIFAR_MEAN,
            CIFAR_STD,
            batch_size=b,
            batches=s.warmup + s.repeats * s.steps,
            workers=s.loader_workers(),
            pin_memory=False,
            seed=s.seed,
        )
    )
    pil_loader = measure(lambda: next(loader), b, calls=s.steps, **kw)
    return {"augment_ours": ours, "augment_pil": pil, "augment_pil_loader": pil_loader}


def bench_features(cfg: Config, images: torch.Tensor, device: torch.device, s: BenchSettings) -> list[float]:
    """(e) Frozen-encoder feature extraction over ``steps × batch`` images (eval batch size)."""
    encoder = build_model(cfg.model).encoder
    n = min(images.shape[0], s.steps * cfg.pretrain.batch_size)
    chunk = images[:n]
    return measure(
        lambda: extract_features(encoder, chunk, CIFAR_MEAN, CIFAR_STD, device=device, batch_size=cfg.eval.batch_size),
        n,
        warmup=min(s.warmup, 1),
        repeats=s.repeats,
        calls=1,
        device=device,
    )


def run(cfg: Config, device: torch.device, settings: BenchSettings) -> dict[str, Any]:
    """Run (a)–(e) and return the benchmark record (see the module docstring)."""
    s, b = settings, cfg.pretrain.batch_size
    if s.threads:
        torch.set_num_threads(s.threads)
    start = time.perf_counter()
    n_train = s.images or s.steps * b
    images = synthetic_images(max(n_train, b), cfg.crop_size, device, s.seed)  # (N, 3, S, S) uint8
    host_images = images[: max(b, 2048)].cpu().numpy()  # pool the PIL paths sample from (with replacement)
    rates: dict[str, list[float]] = {}
    for name, fn in (
        ("step, limit, seed", lambda: bench_training(cfg, images, host_images, device, s)),
        ("augment", lambda: bench_augment(cfg, images, host_images, device, s)),
        ("features", lambda: bench_features(cfg, images, device, s)),
    ):
        log.info("bench: measuring %s", name)
        out = fn()
        rates.update(out if isinstance(out, dict) else {name: out})
    ips = {k: statistics.median(v) for k, v in rates.items()}
    name = describe_device(device)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "threads": torch.get_num_threads(),
        "workers": s.loader_workers(),
        "settings": dataclasses.asdict(s),
        "config": cfg.to_dict(),
        "channels_last": memory_format(device, cfg.pretrain.channels_last) == torch.channels_last,
        "images_per_second": ips,
        "repeats": rates,
        "ratio_step_vs_limit": ips["step"] / ips["limit"],
        "ratio_step_vs_seed": ips["step"] / ips["seed"],
        "ratio_augment_ours_vs_pil_loader": ips["augment_ours"] / ips["augment_pil_loader"],
        "seconds_per_epoch": CIFAR_TRAIN_IMAGES / ips["step"],
        "peak_host_memory_mb": peak_host_memory_mb(),
        "seconds": time.perf_counter() - start,
    }


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table printed by ``simclr-pipeline bench``."""
    ips, cfg = result["images_per_second"], result["config"]
    labels = {
        "step": "(a) our pretraining step",
        "limit": "(b) compute limit (fwd+bwd+opt)",
        "seed": "(c) seed baseline (PIL DataLoader, fp32)",
        "augment_ours": "(d) augmentation, ours",
        "augment_pil": "(d) augmentation, PIL in-process",
        "augment_pil_loader": f"(d) augmentation, PIL {result['workers']} workers",
        "features": "(e) feature extraction",
    }
    lines = [
        f"device {result['device_name']} · torch {result['torch']} · {result['threads']} threads · "
        f"{cfg['model']['arch']} width {cfg['model']['width']} · batch {cfg['pretrain']['batch_size']} · "
        f"{cfg['pretrain']['precision']} · {'channels_last' if result['channels_last'] else 'NCHW'}",
        f"{'measurement':<44}{'images/s':>12}",
    ]
    lines += [f"{labels[k]:<44}{ips[k]:>12.1f}" for k in RATES]
    lines += [
        f"{'a/b ratio_step_vs_limit':<44}{result['ratio_step_vs_limit']:>12.3f}",
        f"{'a/c ratio_step_vs_seed':<44}{result['ratio_step_vs_seed']:>12.3f}",
        f"{'seconds per 50k-image epoch (a)':<44}{result['seconds_per_epoch']:>12.1f}",
    ]
    if result.get("mfu") is not None:  # added by kubeclr.bench.gpu
        lines.append(f"{'MFU of (a) vs bf16 dense peak':<44}{result['mfu']:>12.1%}")
    lines.append(
        f"{'peak host memory, MiB (self/children)':<44}"
        f"{result['peak_host_memory_mb']['self']:>7.0f}/{result['peak_host_memory_mb']['children']:.0f}"
    )
    return "\n".join(lines)


def main(
    cfg: Config, device: str = "auto", json_path: str | None = None, settings: BenchSettings | None = None
) -> dict[str, Any]:
    """Entry of ``simclr-pipeline bench``: run, print the table to stdout, optionally write JSON.

    Args:
        cfg: the config (preset + ``--set``) whose model, augmentation and batch size are measured.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        json_path: where to write the record (atomically), or None.
        settings: benchmark knobs; default :meth:`BenchSettings.from_env`.

    Returns:
        The benchmark record.

    Raises:
        ConfigError: unknown/unavailable device, bad settings, or a batch size the model cannot train on.
    """
    dev = resolve_device(device)
    settings = settings or BenchSettings.from_env()
    result = run(cfg, dev, settings)
    sys.stdout.write(format_table(result) + "\n")
    if json_path:
        write_json(Path(json_path), result)
        log.info("bench: wrote %s", json_path)
    return result
