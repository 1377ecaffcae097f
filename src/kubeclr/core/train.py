"""SimCLR pretraining loop: data on the device, batched augmentation, resumable.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709), Algorithm 1: for each batch,
draw two augmented views of every image, embed both with the encoder and the
projection head, and minimise NT-Xent over the 2N views.

As in airbench, the whole uint8 dataset is moved to the device once and
augmented there, so no DataLoader workers (or ``/dev/shm``) are involved.
Under ``torchrun`` every rank holds the data, draws the same permutation from
the shared seed and trains on its shard of each global batch; the loss
contrasts against the global batch (see :mod:`kubeclr.core.loss`). Side effects
reach the loop only through a :class:`~kubeclr.storage.store.Store` (checkpoints,
rank 0 only) and :class:`~kubeclr.core.callbacks.Callback` hooks.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kubeclr.config import Config
from kubeclr.core import checkpoint, compiled, distributed, resume
from kubeclr.core.augment import SimCLRAugment
from kubeclr.core.batches import batch_plan, view_batches
from kubeclr.core.callbacks import Callback
from kubeclr.core.checkpoint import Store
from kubeclr.core.compiled import Compiled
from kubeclr.core.device import autocast, describe_device, memory_format
from kubeclr.core.health import WARN_STATUSES, pretrain_health
from kubeclr.core.loss import NTXentLoss
from kubeclr.core.model import build_model, load_init_weights
from kubeclr.core.optim import build_optimizer, build_scheduler, scaled_lr
from kubeclr.core.timing import StepTimer
from kubeclr.errors import DataError
from kubeclr.progress import progress

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """What :func:`train_simclr` hands back.

    Attributes:
        model: the trained ``SimCLRModel`` (unwrapped from DDP/compile), on the training device.
        history: one record per epoch: epoch, loss, lr, images_per_second, seconds[, knn_top1];
            with the kNN monitor on, the first record also holds ``knn_top1_init`` (epoch 0).
        summary: the metrics.json ``pretrain`` block (plus ``world_size``, ``device_name``).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]


STEP_SAMPLES = 50  # per-step losses kept per epoch (sampled evenly)


def forward_loss(model: nn.Module, loss_fn: nn.Module, view1: Tensor, view2: Tensor) -> Tensor:
    """NT-Xent of one (local) batch of view pairs.

    Both views go through the model in one call, so BatchNorm sees all 2N
    views and DDP sees one forward per backward.

    Args:
        model: returns ``(h, z)``; may be DDP-wrapped or compiled.
        loss_fn: :class:`~kubeclr.core.loss.NTXentLoss`.
        view1, view2: ``(N, 3, S, S)`` float views; row i of each is the same image.

    Returns:
        Scalar loss (float32).
    """
    return paired_loss(model, loss_fn, torch.cat([view1, view2]))


def paired_loss(
    model: nn.Module, loss_fn: nn.Module, views: Tensor, precision: contextlib.AbstractContextManager | None = None
) -> Tensor:
    """:func:`forward_loss` of views already stacked as ``(2N, 3, S, S)``, rows i and N + i a pair.

    Only the model runs under ``precision`` (an autocast, default none); the loss is float32.
    """
    with precision or contextlib.nullcontext():
        _, z = model(views)  # (2N, proj_dim)
    z1, z2 = z.chunk(2)  # (N, proj_dim) each
    return loss_fn(z1, z2)


def train_simclr(
    cfg: Config,
    images: Tensor | np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    store: Store | None = None,
    callbacks: Callback | None = None,
    monitor: Callable[[nn.Module], float] | None = None,
    init_state: dict | None = None,
) -> PretrainResult:
    """Pretrain encoder + head with SimCLR, resuming from ``store`` if it holds a checkpoint.

    Args:
        cfg: the run's config (model, augment, pretrain).
        images: uint8 ``(N, 3, H, W)`` training images (labels are never used).
        mean, std: per-channel normalisation statistics in [0, 1].
        device: this process's device (``cuda:LOCAL_RANK`` under torchrun).
        store: checkpoint store; the newest complete checkpoint is resumed and
            rank 0 writes one every ``checkpoint_every`` epochs and at the end.
        callbacks: hooks for metrics/logging (called on every rank; rank-aware
            callbacks decide themselves).
        monitor: called with the encoder (in train mode; it must restore that) every
            ``pretrain.knn_every`` epochs and after the last one; its value is recorded
            as the epoch's ``knn_top1`` (see :mod:`kubeclr.launch.process`). It also runs
            once before the first step: the run's own baseline, ``knn_top1_init`` of the
            first record and the summary (a resumed run keeps the value it recorded).
        init_state: encoder state dict when ``model.init`` is a URI.

    Returns:
        A :class:`PretrainResult`.

    Raises:
        DataError: ``images`` is not a uint8 ``(N, 3, H, W)`` array.
        ConfigError: batch size incompatible with the data or the ranks; fp16 on CPU.
        UserError: the checkpoint at ``store`` was written for another model.
    """
    pc = cfg.pretrain
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise DataError(f"pretraining images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    rank, world = distributed.rank_and_world()
    per_rank, steps_per_epoch = batch_plan(pc.batch_size, world, images.shape[0])
    callbacks = callbacks or Callback()
    cuda = device.type == "cuda"
    mixed = autocast(device, pc.precision)  # first: fp16 on CPU fails before any work

    _seed_everything(pc.seed)
    model = build_model(cfg.model)
    fmt = memory_format(device, pc.channels_last)
    load_init_weights(model.encoder, cfg.model, init_state)
    model = model.to(device, memory_format=fmt)
    wrapped = distributed.wrap_model(model, device, sync_bn=cfg.model.sync_bn)
    model = distributed.unwrap(wrapped)  # SyncBatchNorm conversion may have replaced layers
    if cuda:
        torch.backends.cudnn.benchmark = True  # static shapes: each convolution's fastest algorithm, picked once
    cache = store if pc.compile and pc.compile_cache else None  # kernels next to the checkpoints (trusted prefix)
    if rank == 0:
        compiled.load_cache(cache, device)  # a retried or resumed task reuses the kernels it compiled before
    forward = Compiled(wrapped, device, enabled=pc.compile)
    optimizer = build_optimizer(model, pc)
    scheduler = build_scheduler(optimizer, pc, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and pc.precision == "fp16")
    loss_fn = NTXentLoss(pc.temperature)
    aug = SimCLRAugment(cfg.augment, mean, std, compile=pc.compile).to(device)
    gens = {
        "shuffle": torch.Generator().manual_seed(pc.seed),  # same on every rank
        "augment": torch.Generator(device=device).manual_seed(pc.seed + 7919 * (rank + 1)),
    }
    data = images.to(device)  # (N, 3, H, W) uint8, resident for the whole run

    history: list[dict[str, Any]] = []
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    resumed = checkpoint.load_latest(store) if store is not None else None
    if resumed is not None:
        history = resume.restore_run(resumed[1], parts, gens, cfg, rank, world, store)
    start_epoch = len(history)
    callbacks.on_train_start(
        {
            "arch": cfg.model.arch,
            "device": str(device),
            "epochs": pc.epochs,
            "steps_per_epoch": steps_per_epoch,
            "world_size": world,
            "start_epoch": start_epoch,
        }
    )

    knn_on = monitor is not None and pc.knn_every > 0
    knn_init = _knn_at_init(model.encoder, monitor, rank) if knn_on and start_epoch == 0 else None
    writer = checkpoint.CheckpointWriter(store) if store is not None else None  # writes in the background
    warned: set[str] = set()  # each bad verdict is logged once
    for epoch in range(start_epoch + 1, pc.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        timer = StepTimer(device, steps_per_epoch)  # GPU time per step, read once per epoch
        perm = torch.randperm(data.shape[0], generator=gens["shuffle"]).to(device)  # (N,)
        step_loss = torch.zeros(steps_per_epoch, device=device)  # read once per epoch, with the mean
        bar = (
            progress(range(steps_per_epoch), total=steps_per_epoch, desc=f"epoch {epoch}/{pc.epochs}")
            if rank == 0
            else range(steps_per_epoch)
        )
        with view_batches(
            aug,
            data,
            perm,
            gens["augment"],
            batch_size=pc.batch_size,
            per_rank=per_rank,
            rank=rank,
            steps=steps_per_epoch,
            channels_last=pc.channels_last,
            background=device.type == "cpu",
        ) as batches:
            timer.start()
            for i, batch_views in zip(bar, batches):
                loss = paired_loss(forward, loss_fn, batch_views, mixed)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                step_loss[i] = loss.detach()  # stays on the device: no sync per step
                timer.mark()
        mean_loss = float(distributed.all_reduce_mean(step_loss.mean()).item())  # one sync per epoch
        step_seconds = timer.seconds()
        for i, took in enumerate(step_seconds):
            callbacks.on_step_end((epoch - 1) * steps_per_epoch + i + 1, took)
        stride = max(1, steps_per_epoch // STEP_SAMPLES)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": mean_loss,
            "lr": float(lr),
            "images_per_second": steps_per_epoch * pc.batch_size / seconds,
            "seconds": seconds,
            "median_step_seconds": float(np.median(step_seconds)) if step_seconds else 0.0,
            # this rank's loss every `stride` steps: the within-epoch curve the report draws
            "step_loss": {"every": stride, "values": [round(v, 5) for v in step_loss[::stride].tolist()]},
        }
        if knn_on and (epoch % pc.knn_every == 0 or epoch == pc.epochs):
            record["knn_top1"] = float(monitor(model.encoder))
        if epoch == 1 and knn_init is not None:
            record["knn_top1_init"] = knn_init
        if epoch == start_epoch + 1 and pc.compile:
            # compilation happens in this process's first step: what it cost, over a steady step
            record["compile_seconds"] = (
                max(0.0, step_seconds[0] - record["median_step_seconds"]) if step_seconds else 0.0
            )
            if rank == 0 and forward.stats()["compiled"]:
                compiled.save_cache(cache, device)
        history.append(record)
        if writer is not None and resume.checkpoint_due(epoch, pc):
            resume.save_run(writer, epoch, epoch * steps_per_epoch, parts, gens, cfg, history, rank)
        if rank == 0:
            log.info(
                "epoch %d/%d loss %.4f lr %.4g %.0f img/s %.1fs%s",
                epoch,
                pc.epochs,
                mean_loss,
                lr,
                record["images_per_second"],
                seconds,
                f" knn {record['knn_top1']:.3f}" if "knn_top1" in record else "",
            )
            health = pretrain_health(history, cfg, steps_per_epoch)
            if health["status"] in WARN_STATUSES and health["status"] not in warned:
                log.warning("%s", health["message"])
                warned.add(health["status"])
        callbacks.on_epoch_end(record)

    if writer is not None:
        writer.wait()  # the last checkpoint is stored, or its write error raised, before the run succeeds
    summary = _summary(cfg, history, device, world, steps_per_epoch)
    summary["compile"] = forward.stats()
    if summary["compile"]["graph_breaks"] or summary["compile"]["recompiles"]:
        log.warning("torch.compile: %(graph_breaks)d graph break(s), %(recompiles)d recompile(s)", summary["compile"])
    callbacks.on_train_end(summary)
    return PretrainResult(model=model, history=history, summary=summary)


def _knn_at_init(encoder: nn.Module, monitor: Callable[[nn.Module], float], rank: int) -> float:
    """The kNN monitor on the encoder before any step (epoch 0): the baseline this run must beat."""
    t0 = time.perf_counter()
    value = float(monitor(encoder))
    if rank == 0:
        log.info("epoch 0 (before the first step): knn %.3f (%.1fs)", value, time.perf_counter() - t0)
    return value


def _seed_everything(seed: int) -> None:
    """Seed the global RNGs so that model initialisation is identical on every rank and run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _summary(
    cfg: Config, history: list[dict[str, Any]], device: torch.device, world: int, steps_per_epoch: int
) -> dict[str, Any]:
    """The metrics.json ``pretrain`` block, over every epoch including those before a resume."""
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["images_per_second"] * r["seconds"] for r in history)  # images seen, all ranks
    return {
        "arch": cfg.model.arch,
        "epochs": len(history),
        "batch_size": cfg.pretrain.batch_size,
        "final_loss": history[-1]["loss"] if history else float("nan"),
        "seconds": seconds,
        "images_per_second": images / seconds if seconds else 0.0,
        "device": device.type,
        "device_name": describe_device(device),
        "precision": cfg.pretrain.precision,  # as used: autocast() refuses what it cannot honour
        "world_size": world,
        # this process's compile cost (its first step over a steady one) and its first epoch
        "compile_seconds": next((r["compile_seconds"] for r in reversed(history) if "compile_seconds" in r), 0.0),
        "first_epoch_seconds": history[0]["seconds"] if history else 0.0,
        "peak_lr": scaled_lr(cfg.pretrain),
        # the kNN monitor before the first step (None with the monitor off): what the run must beat
        "knn_top1_init": history[0].get("knn_top1_init") if history else None,
        "health": pretrain_health(history, cfg, steps_per_epoch),
    }
