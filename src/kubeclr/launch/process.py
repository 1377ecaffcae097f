"""One pretraining process: files in, SimCLR training, encoder and history out.

Every engine ends here: the in-process engine calls :func:`train_and_save`
directly, torchrun and the multi-node jobs run it on every rank through
:mod:`kubeclr.launch.entry`. Rank 0 writes the outputs; every rank trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kubeclr.atomic import write_bytes_atomic, write_json
from kubeclr.config import Config, config_digest
from kubeclr.core import distributed
from kubeclr.core.model import load_init_state
from kubeclr.core.train import Callback, CallbackList, train_simclr
from kubeclr.data.files import Split, load_stats, read_split
from kubeclr.data.stream import StreamedImages, decode_sample, open_index
from kubeclr.errors import UserError
from kubeclr.eval.knn import knn_monitor
from kubeclr.eval.representation import MAX_IMAGES, MONITOR_IMAGES, measure_head, rankme_monitor
from kubeclr.storage.folders import shard_dir
from kubeclr.storage.store import open_store, parent_and_key
from kubeclr.telemetry.prometheus import training_callback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainFiles:
    """The pretrain step's files: two inputs, two outputs (either output may be None on ranks > 0).

    ``checkpoints`` is where checkpoints go and are resumed from: ``storage.checkpoint_uri``,
    scoped by run on a cluster ('' = no checkpoints). It travels beside the config, not in it,
    so every step of a run keeps one config and one digest.
    """

    train: Path
    stats: Path
    encoder_out: Path | None
    history_out: Path | None
    checkpoints: str = ""


class LogCallback(Callback):
    """Log the start and end of pretraining (epochs log themselves in :mod:`kubeclr.core.train`)."""

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        log.info(
            "pretraining %s on %s: epochs %d-%d of %d, %d steps/epoch, %d process(es)",
            info["arch"],
            info["device"],
            info["start_epoch"] + 1,
            info["epochs"],
            info["epochs"],
            info["steps_per_epoch"],
            info["world_size"],
        )

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        log.info(
            "pretraining done: final loss %.4f, %.1fs, %.0f img/s",
            summary["final_loss"],
            summary["seconds"],
            summary["images_per_second"],
        )


def train_and_save(
    cfg: Config, files: TrainFiles, *, run_name: str, device: torch.device, output_uri: str = ""
) -> dict:
    """Train in this process (one rank of a group, or alone) and, on rank 0, write the outputs.

    Args:
        cfg: the run's config.
        files: the train split and stats to read, the encoder and history to write, the checkpoints.
        run_name: labels the exported metrics.
        device: this rank's device.
        output_uri: also upload ``encoder.pt``, ``history.json`` and ``summary.json``
            under this store URI (multi-node jobs, whose pods share no filesystem).

    Returns:
        The metrics.json ``pretrain`` block.
    """
    split = read_split("train split", files.train, unlabeled=True)
    images, split = _pretraining_images(cfg, split, device)
    mean, std, _ = load_stats(files.stats)
    init_state = load_init_state(cfg.model.init, parent_and_key)
    store = open_store(files.checkpoints) if files.checkpoints else None
    main = distributed.is_main()
    callbacks = CallbackList([LogCallback(), training_callback(cfg.metrics, run_name)] if main else [])
    monitor, monitor_facts = None, None
    if cfg.pretrain.knn_every and split.class_names:
        monitor, monitor_facts = knn_monitor(
            cfg.eval, split.images, split.labels, len(split.class_names), mean, std, seed=cfg.data.seed, device=device
        )
    elif cfg.pretrain.knn_every:  # no labels: the monitor follows the features' effective rank alone
        shown = _decoded(images, MONITOR_IMAGES, cfg.data.seed)
        monitor, monitor_facts = rankme_monitor(cfg.eval, shown, mean, std, seed=cfg.data.seed, device=device)
    result = train_simclr(
        cfg,
        images,
        mean,
        std,
        device=device,
        store=store,
        callbacks=callbacks,
        monitor=monitor,
        init_state=init_state,
    )
    summary = {**result.summary, **({"knn_monitor": monitor_facts} if monitor_facts else {})}
    if main and len(images) >= 2:  # where Wang & Isola define them for SimCLR: the head's output z
        summary["representation_head"] = measure_head(
            result.model,
            _decoded(images, MAX_IMAGES, cfg.data.seed),
            mean,
            std,
            cfg.augment,
            device=device,
            seed=cfg.data.seed,
            batch_size=cfg.eval.batch_size,
        )
    if main:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in result.model.encoder.state_dict().items()}, buf)
        history = {
            "epochs": result.history,
            "summary": summary,
            "config": cfg.to_dict(),
            "config_sha256": config_digest(cfg),
            "encoder_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),  # which encoder file these epochs made
        }
        if files.encoder_out:
            write_bytes_atomic(files.encoder_out, buf.getvalue())
        if files.history_out:
            write_json(files.history_out, history)
        if output_uri:
            out = open_store(output_uri)
            out.write_bytes("encoder.pt", buf.getvalue())
            out.write_bytes("history.json", _json_bytes(history))
            out.write_bytes("summary.json", _json_bytes(summary))
    distributed.barrier()  # no rank exits (and tears down the group) before the outputs exist
    return summary


STREAM_MONITOR_IMAGES = 2_500  # streamed shards: the kNN monitor's decoded sample (its bank and queries)


def _pretraining_images(cfg: Config, split: Split, device: torch.device) -> tuple[np.ndarray | StreamedImages, Split]:
    """The pretraining images (labelled + unlabelled; pretraining never reads a label) and the labelled
    split the kNN monitor reads.

    Resident: the images themselves. Streamed from shards: a :class:`StreamedImages`, and, only when
    the kNN monitor runs, a seeded decoded sample of :data:`STREAM_MONITOR_IMAGES` labelled images
    (host memory stays bounded whatever the dataset's size).
    """
    main = distributed.is_main()
    index = open_index(split, shard_dir, unlabeled=True)
    if index is None:
        images = split.pretraining_images()
        if main and split.unlabeled is not None and len(split.unlabeled):
            log.info(
                "pretraining on %d images: %d labelled + %d unlabelled", len(images), len(split), len(split.unlabeled)
            )
        return images, dataclasses.replace(split, unlabeled=None)  # the monitor needs the labelled part only
    d = cfg.data
    cuda = device.type == "cuda"
    images = StreamedImages(index, seed=cfg.pretrain.seed, workers=d.workers, buffer=d.shuffle_buffer, pin=cuda)
    labelled = open_index(split, shard_dir)
    count = STREAM_MONITOR_IMAGES if cfg.pretrain.knn_every and split.class_names else 0
    shown, labels = decode_sample(labelled, count, d.seed)
    if main:
        log.info(
            "pretraining on %d images streamed from %d shards at %s (%d labelled, %d unlabelled)%s",
            len(index),
            int((index.counts() > 0).sum()),
            index.where.source,
            len(labelled),
            len(index) - len(labelled),
            f"; the kNN monitor on a decoded sample of {len(labels)}" if count else "",
        )
    return images, dataclasses.replace(split, images=shown, labels=labels, refs=None)


def _decoded(images: np.ndarray | StreamedImages, count: int, seed: int) -> np.ndarray:
    """Pretraining images to measure on: resident ones as they are (the measures draw their own sample),
    or a seeded decoded sample of ``count`` streamed ones."""
    return images if isinstance(images, np.ndarray) else decode_sample(images.index, count, seed)[0]


# what a signal that ended a training process says, and what to try
SIGNAL_ADVICE = {
    signal.SIGSEGV: (
        "segmentation fault",
        "a crash in native code (torch, oneDNN or CUDA); try pretrain.compile=false and pretrain.precision=fp32, "
        "and report it with the step's log",
    ),
    signal.SIGBUS: ("bus error", "often /dev/shm or the disk is full; free space or give the pod more"),
    signal.SIGABRT: ("aborted", "native code gave up; the line before it in the log says why"),
    signal.SIGILL: ("illegal instruction", "a binary built for a newer CPU than this one; run on another node"),
    signal.SIGKILL: (
        "killed",
        "usually the out-of-memory killer; lower pretrain.batch_size or give the step more memory",
    ),
    signal.SIGTERM: (
        "terminated",
        "stopped from outside (a pod deleted or preempted); run again to resume from the last checkpoint",
    ),
}


class TrainingKilled(UserError):
    """A training process ended by a signal: one line naming it and what to try.

    The exit code is a shell's for that signal, 128 + its number (139 for SIGSEGV).
    """

    def __init__(self, signum: int, what: str = "the training process") -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        meaning, advice = SIGNAL_ADVICE.get(signum, ("", "see the log above"))
        super().__init__(f"{what} was killed by {name}{f' ({meaning})' if meaning else ''}; {advice}")
        self.signum = signum
        self.exit_code = 128 + signum


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
