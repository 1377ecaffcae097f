"""SimCLR pretraining loop: data on the device, batched augmentation, resumable.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709), Algorithm 1: for each batch,
draw two augmented views of every image, embed both with the encoder and the
projection head, and minimise NT-Xent over the 2N views.

As in airbench, the whole uint8 dataset is moved to the device once and
augmented there, so no DataLoader workers (or ``/dev/shm``) are involved.
Under ``torchrun`` every rank holds the data, draws the same permutation from
the shared seed and trains on its shard of each global batch (:func:`batch_plan`,
:func:`view_batches`); the loss contrasts against the global batch (see
:mod:`kubeclr.core.loss`). Side effects reach the loop only through a
:class:`~kubeclr.core.checkpoint.Store` (checkpoints, rank 0 only; what a run's
checkpoint holds and how it resumes is :mod:`kubeclr.core.checkpoint`) and
:class:`Callback` hooks (metrics, logging), whose implementations the loop never imports.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from kubeclr.config import Config
from kubeclr.core import checkpoint, compiled, distributed
from kubeclr.core.augment import SimCLRAugment, paired_views
from kubeclr.core.checkpoint import Store
from kubeclr.core.compiled import Compiled
from kubeclr.core.device import autocast, describe_device, memory_format
from kubeclr.core.health import WARN_STATUSES, pretrain_health
from kubeclr.core.loss import NTXentLoss
from kubeclr.core.model import build_model, load_init_weights
from kubeclr.core.optim import build_optimizer, build_scheduler, scaled_lr
from kubeclr.errors import ConfigError, DataError
from kubeclr.progress import progress

log = logging.getLogger(__name__)

# the representation monitor: the encoder in, {"knn_top1": …, "rankme": …} (or the kNN top-1 alone) out
Monitor = Callable[[nn.Module], "Mapping[str, float] | float"]


class Callback:
    """Training hooks: how side effects (metrics, logging) reach the pure loop. No-op base: override what you need.

    The loop calls them on every rank (rank-aware callbacks decide themselves); the Prometheus
    exporter (:mod:`kubeclr.telemetry.prometheus`) and the launcher's logger implement them.
    """

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        """Called once with run facts: arch, device, epochs, steps_per_epoch, world_size, start_epoch."""

    def on_step_end(self, step: int, seconds: float) -> None:
        """Called after each optimiser step with its wall time (no device sync is forced for it)."""

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        """Called with the epoch's history record (epoch, loss, lr, images_per_second, seconds, …)."""

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        """Called once with the pretrain summary (the metrics.json ``pretrain`` block)."""


class CallbackList(Callback):
    """Fan one call out to many callbacks, in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_start(info)

    def on_step_end(self, step: int, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_step_end(step, seconds)

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(record)

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(summary)


@dataclass
class PretrainResult:
    """What :func:`train_simclr` hands back.

    Attributes:
        model: the trained ``SimCLRModel`` (unwrapped from DDP/compile), on the training device.
        history: one record per epoch: epoch, loss, lr, images_per_second, seconds[, knn_top1, rankme];
            with the kNN monitor on, the first record also holds ``knn_top1_init`` and
            ``rankme_init`` (epoch 0).
        summary: the metrics.json ``pretrain`` block (plus ``world_size``, ``device_name``).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]


STEP_SAMPLES = 50  # per-step losses kept per epoch (sampled evenly)


class BatchStream(Protocol):
    """Training images too large for the device: each epoch's uint8 batches arrive from elsewhere.

    :class:`kubeclr.data.stream.StreamedImages` reads them from WebDataset shards. The order of an
    epoch must depend on the epoch (and the rank) alone, so that a run resumed at an epoch
    boundary reads what the uninterrupted run read.
    """

    image_shape: tuple[int, int, int]  # (3, H, W)

    def __len__(self) -> int:
        """Images per epoch, all ranks together."""

    def steps(self, per_rank: int, world: int) -> int:
        """Optimiser steps per epoch (the same on every rank)."""

    def epoch(
        self, epoch: int, *, rank: int, world: int, per_rank: int, steps: int
    ) -> contextlib.AbstractContextManager[Iterator[Tensor]]:
        """This rank's ``steps`` uint8 ``(per_rank, 3, H, W)`` batches of ``epoch`` (1-based)."""


def paired_loss(
    model: nn.Module, loss_fn: nn.Module, views: Tensor, precision: contextlib.AbstractContextManager | None = None
) -> Tensor:
    """NT-Xent of one (local) batch of view pairs stacked as ``(2N, 3, S, S)``, rows i and N + i a pair.

    Both views go through the model in one call, so BatchNorm sees all 2N views and DDP
    sees one forward per backward. Only the model runs under ``precision`` (an autocast,
    default none); the loss is float32.

    Args:
        model: returns ``(h, z)``; may be DDP-wrapped or compiled.
        loss_fn: :class:`~kubeclr.core.loss.NTXentLoss`.
        views: ``(2N, 3, S, S)`` float views (:func:`~kubeclr.core.augment.paired_views`).
        precision: the autocast context, or None.

    Returns:
        Scalar loss (float32).
    """
    with precision or contextlib.nullcontext():
        _, z = model(views)  # (2N, proj_dim)
    z1, z2 = z.chunk(2)  # (N, proj_dim) each
    return loss_fn(z1, z2)


def train_simclr(
    cfg: Config,
    images: Tensor | np.ndarray | BatchStream,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    store: Store | None = None,
    callbacks: Callback | None = None,
    monitor: Monitor | None = None,
    init_state: dict | None = None,
) -> PretrainResult:
    """Pretrain encoder + head with SimCLR, resuming from ``store`` if it holds a checkpoint.

    Args:
        cfg: the run's config (model, augment, pretrain).
        images: uint8 ``(N, 3, H, W)`` training images (labels are never used), moved to the device
            once; or a :class:`BatchStream` that hands over each epoch's batches.
        mean, std: per-channel normalisation statistics in [0, 1].
        device: this process's device (``cuda:LOCAL_RANK`` under torchrun).
        store: checkpoint store; the newest complete checkpoint is resumed and
            rank 0 writes one every ``checkpoint_every`` epochs and at the end.
        callbacks: hooks for metrics/logging (called on every rank; rank-aware
            callbacks decide themselves).
        monitor: called with the encoder (in train mode; it must restore that) every
            ``pretrain.knn_every`` epochs and after the last one; its values (a mapping such as
            ``{"knn_top1", "rankme"}``, or a float: the kNN top-1) go into the epoch's record
            (see :mod:`kubeclr.launch.process`). It also runs once before the first step: the
            run's own baseline, ``knn_top1_init`` (``rankme_init``) of the first record and the
            summary (a resumed run keeps the values it recorded).
        init_state: encoder state dict when ``model.init`` is a URI.

    Returns:
        A :class:`PretrainResult`.

    Raises:
        DataError: ``images`` is not a uint8 ``(N, 3, H, W)`` array.
        ConfigError: batch size incompatible with the data or the ranks; fp16 on CPU.
        UserError: the checkpoint at ``store`` was written for another model.
    """
    pc = cfg.pretrain
    streamed = not isinstance(images, (Tensor, np.ndarray))
    if not streamed:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"pretraining images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    rank, world = distributed.rank_and_world()
    per_rank, steps_per_epoch = batch_plan(pc.batch_size, world, len(images))
    if streamed:
        steps_per_epoch = images.steps(per_rank, world)
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
    # Two random streams, both derived from pretrain.seed alone (so a run, and a resumed run, is reproducible).
    # The shuffle is the same on every rank: all ranks draw one permutation and each trains on its shard of it.
    # The augmentation differs per rank, or every rank would draw the same crops and colours for its shard:
    # rank r seeds seed + 7919 * (r + 1). 7919 (the 1000th prime) keeps the ranks' seeds apart from each other
    # and, with r + 1 >= 1, from the shuffle's own seed; it depends on the rank only, so a resumed run (or one
    # whose saved stream cannot be restored, see checkpoint.restore_run) gets the same seed back. A run with
    # W processes therefore augments differently from a one-process run of the same seed.
    gens = {
        "shuffle": torch.Generator().manual_seed(pc.seed),
        "augment": torch.Generator(device=device).manual_seed(pc.seed + 7919 * (rank + 1)),
    }
    data = None if streamed else images.to(device)  # (N, 3, H, W) uint8, resident for the whole run

    history: list[dict[str, Any]] = []
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    resumed = checkpoint.load_latest(store) if store is not None else None
    if resumed is not None:
        history = checkpoint.restore_run(resumed[1], parts, gens, cfg, rank, world, store)
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
    at_init = _monitor_at_init(model.encoder, monitor, rank) if knn_on and start_epoch == 0 else {}
    writer = checkpoint.CheckpointWriter(store) if store is not None else None  # writes in the background
    warned: set[str] = set()  # each bad verdict is logged once
    for epoch in range(start_epoch + 1, pc.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        timer = StepTimer(device, steps_per_epoch)  # GPU time per step, read once per epoch
        step_loss = torch.zeros(steps_per_epoch, device=device)  # read once per epoch, with the mean
        bar = (
            progress(range(steps_per_epoch), total=steps_per_epoch, desc=f"epoch {epoch}/{pc.epochs}")
            if rank == 0
            else range(steps_per_epoch)
        )
        with contextlib.ExitStack() as stack:
            if streamed:  # this epoch's batches, read and decoded elsewhere while the device trains
                chunks = stack.enter_context(
                    images.epoch(epoch, rank=rank, world=world, per_rank=per_rank, steps=steps_per_epoch)
                )
                pick = _streamed_picker(chunks, device)
            else:
                perm = torch.randperm(data.shape[0], generator=gens["shuffle"]).to(device)  # (N,)
                pick = _resident_picker(data, perm, batch_size=pc.batch_size, per_rank=per_rank, rank=rank)
            batches = stack.enter_context(
                view_batches(
                    aug,
                    pick,
                    gens["augment"],
                    steps=steps_per_epoch,
                    fmt=memory_format(device, pc.channels_last),
                    background=device.type == "cpu",
                )
            )
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
            record |= _read_monitor(monitor, model.encoder)
        if epoch == 1:
            record |= {f"{name}_init": value for name, value in at_init.items()}
        if epoch == start_epoch + 1 and pc.compile:
            # compilation happens in this process's first step: what it cost, over a steady step
            record["compile_seconds"] = (
                max(0.0, step_seconds[0] - record["median_step_seconds"]) if step_seconds else 0.0
            )
            if rank == 0 and forward.stats()["compiled"]:
                compiled.save_cache(cache, device)
        history.append(record)
        if writer is not None and checkpoint.checkpoint_due(epoch, pc):
            checkpoint.save_run(writer, epoch, epoch * steps_per_epoch, parts, gens, cfg, history, rank)
        if rank == 0:
            log.info(
                "epoch %d/%d loss %.4f lr %.4g %.0f img/s %.1fs%s",
                epoch,
                pc.epochs,
                mean_loss,
                lr,
                record["images_per_second"],
                seconds,
                (f" knn {record['knn_top1']:.3f}" if "knn_top1" in record else "")
                + (f" rankme {record['rankme']:.1f}" if "rankme" in record else ""),
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


# -- an epoch as batches: the split of the global batch over ranks, and each batch's views ---------


def batch_plan(batch_size: int, world_size: int, n_images: int) -> tuple[int, int]:
    """(per-rank batch, steps per epoch); the last incomplete global batch is dropped.

    Raises:
        ConfigError: the batch does not split evenly over ranks, or exceeds the data.
    """
    if batch_size % world_size:
        raise ConfigError(f"pretrain.batch_size={batch_size} is not divisible by the {world_size} training processes")
    if batch_size > n_images:
        raise ConfigError(f"pretrain.batch_size={batch_size} exceeds the {n_images} training images")
    return batch_size // world_size, n_images // batch_size


def _resident_picker(
    data: Tensor, perm: Tensor, *, batch_size: int, per_rank: int, rank: int
) -> Callable[[int], Tensor]:
    """Batch i of an epoch of resident data: ``data[perm[i * batch_size + rank * per_rank :][:per_rank]]``."""

    def pick(i: int) -> Tensor:
        start = i * batch_size + rank * per_rank
        return data[perm[start : start + per_rank]]

    return pick


def _streamed_picker(batches: Iterator[Tensor], device: torch.device) -> Callable[[int], Tensor]:
    """Batch i of a streamed epoch: the next one the stream hands over, copied to ``device``."""

    def pick(i: int) -> Tensor:
        return next(batches).to(device, non_blocking=True)

    return pick


def view_batches(
    aug: SimCLRAugment,
    pick: Callable[[int], Tensor],
    generator: torch.Generator,
    *,
    steps: int,
    fmt: torch.memory_format,
    background: bool,
) -> contextlib.AbstractContextManager[Iterable[Tensor]]:
    """This rank's ``steps`` batches of paired views for one epoch, as a context manager over an iterable.

    Batch i holds the views ``(2 * b, 3, S, S)`` of ``pick(i)``, the epoch's i-th uint8 batch of
    this rank (resident data indexed by the epoch's permutation, or the next streamed batch), in
    memory format ``fmt``. With ``background`` (CPU) batch i + 1 is augmented on one thread while
    batch i trains, the overlap a DataLoader's workers give; that thread alone calls ``pick`` and
    draws from ``generator``, in order, so the stream and every checkpoint are bitwise those of
    the inline loop. On CUDA kernels are asynchronous anyway.
    """

    def views(i: int) -> Tensor:
        v = paired_views(aug, pick(i), generator)  # (2b, 3, S, S) float32
        return v.contiguous(memory_format=fmt)

    return Prefetch(views, steps) if background else contextlib.nullcontext(map(views, range(steps)))


T = TypeVar("T")
_POLL_S = 0.1


class Prefetch(Generic[T]):
    """Iterate ``produce(0), …, produce(count - 1)`` computed ``depth`` items ahead on one thread.

    On CPU the batched augmentation and the model share the same cores; the
    seed article's DataLoader overlaps them with worker processes. Prefetch
    gets the same overlap with one producer thread (PyTorch kernels release the
    GIL) and no extra process, shared memory or pickling. Items are produced
    strictly in order by that one thread, so a generator it draws from advances
    exactly as it would inline: results are bitwise identical to the inline loop,
    and once the iteration is finished the generator's state is the same as well.

    Use as a context manager; leaving it (normally or by an exception) stops
    the producer after at most the item it is computing.

    Args:
        produce: item ``i`` -> value; called on the producer thread, in order.
        count: number of items.
        depth: how many finished items may wait (1 = one batch ahead).
        threads: torch intra-op threads of the producer thread (0 = torch's
            default). Set per thread: the caller's setting is untouched.

    Raises:
        Exception: whatever ``produce`` raised, re-raised in the consumer.
    """

    def __init__(self, produce: Callable[[int], T], count: int, *, depth: int = 1, threads: int = 1) -> None:
        self._produce, self._count, self._threads = produce, count, threads
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeclr-prefetch", daemon=True)

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        for _ in range(self._count):
            ok, value = self._queue.get()
            if not ok:
                raise value
            yield value

    def _run(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        try:
            for i in range(self._count):
                if self._stop.is_set():
                    return
                self._put((True, self._produce(i)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put((False, exc))

    def _put(self, item: tuple[bool, object]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                pass


# -- timing -------------------------------------------------------------------------------------


class StepTimer:
    """Durations of ``steps`` consecutive steps on ``device`` that mean what they say on a GPU.

    ``time.perf_counter()`` around a CUDA step measures how long the host took to
    *enqueue* it, not how long the GPU ran it. StepTimer records a CUDA event at
    each step boundary instead (no sync) and reads the durations when the epoch
    ends, after the loop's one sync per epoch; on CPU, where work is synchronous,
    the host clock is the truth.

    Call :meth:`start` before the first step and :meth:`mark` after each one;
    :meth:`seconds` returns one duration per marked step.
    """

    def __init__(self, device: torch.device, steps: int) -> None:
        self.cuda = device.type == "cuda"
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if self.cuda else []
        self._times: list[float] = []

    def start(self) -> None:
        self._record()

    def mark(self) -> None:
        self._record()

    def _record(self) -> None:
        if self.cuda:
            self._events[len(self._times)].record()
            self._times.append(0.0)  # placeholder: the count of recorded events
        else:
            self._times.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """One duration per step marked so far (waits for the last CUDA event)."""
        n = len(self._times)
        if n < 2:
            return []
        if not self.cuda:
            return [b - a for a, b in zip(self._times, self._times[1:])]
        self._events[n - 1].synchronize()
        return [self._events[i].elapsed_time(self._events[i + 1]) / 1000 for i in range(n - 1)]


def _read_monitor(monitor: Monitor, encoder: nn.Module) -> dict[str, float]:
    """The monitor's values as ``{name: float}`` (a bare float is the kNN top-1)."""
    out = monitor(encoder)
    return {k: float(v) for k, v in (out.items() if isinstance(out, Mapping) else {"knn_top1": out}.items())}


def _monitor_at_init(encoder: nn.Module, monitor: Monitor, rank: int) -> dict[str, float]:
    """The monitor on the encoder before any step (epoch 0): the baseline this run must beat."""
    t0 = time.perf_counter()
    values = _read_monitor(monitor, encoder)
    if rank == 0:
        seen = ", ".join(f"{k} {v:.3f}" for k, v in values.items())
        log.info("epoch 0 (before the first step): %s (%.1fs)", seen, time.perf_counter() - t0)
    return values


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
        "rankme_init": history[0].get("rankme_init") if history else None,
        "health": pretrain_health(history, cfg, steps_per_epoch),
    }
