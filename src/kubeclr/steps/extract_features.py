"""The ``extract_features`` step: every image encoded once by the frozen encoder (no head)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from kubeclr.config import Config
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.core.model import load_encoder
from kubeclr.data.files import SPLITS, Features, load_stats, read_split, save_features
from kubeclr.data.stream import ShardIndex, decode_sample, open_index, ordered_chunks
from kubeclr.eval.features import extract_features
from kubeclr.eval.representation import MAX_IMAGES, measure
from kubeclr.progress import progress
from kubeclr.storage.folders import shard_dir

log = logging.getLogger(__name__)

# What this step reads of the config (kubeclr.steps): what built the encoder, the augmentation (the
# label-free measures' views), data.seed, and the evaluation's batch size.
READS: tuple[str, ...] = ("data", "model", "augment", "pretrain", "eval")


def run(
    cfg: Config,
    encoder_path: str | Path,
    stats_path: str | Path,
    train_path: str | Path,
    val_path: str | Path,
    test_path: str | Path,
    features_out: str | Path,
) -> dict:
    """Encode the three splits with the frozen encoder, measure the representation, save the features.

    The label-free measures (:mod:`kubeclr.eval.representation`) are taken on the test split,
    images the encoder never trained on.

    Returns:
        ``{"seconds", "feature_dim", "device", "representation"}``, also the features' ``meta``.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.pretrain.device)
    encoder = load_encoder(cfg.model, encoder_path)
    mean, std, _ = load_stats(stats_path)
    arrays = {}
    class_names: tuple[str, ...] = ()
    for name, path in zip(SPLITS, (train_path, val_path, test_path)):
        split = read_split(f"{name} split", path)
        class_names = split.class_names
        index = open_index(split, shard_dir)
        if index is None:
            images, labels = split.images, split.labels
            feats = extract_features(encoder, images, mean, std, device=device, batch_size=cfg.eval.batch_size)
        else:  # streamed shards: decoded chunk by chunk, each sample once
            feats, labels = _streamed_features(cfg, encoder, index, mean, std, device)
        arrays[f"{name}_x"], arrays[f"{name}_y"] = feats.numpy(), labels
        if name == "test":
            shown = feats
            if index is not None:  # the measures' images: a seeded decoded sample, with its own features
                images = decode_sample(index, MAX_IMAGES, cfg.data.seed)[0]
                shown = extract_features(encoder, images, mean, std, device=device, batch_size=cfg.eval.batch_size)
            representation = _measure(cfg, encoder, images, shown, mean, std, device)
    meta = {
        "seconds": time.perf_counter() - start,
        "feature_dim": int(encoder.feature_dim),
        "device": describe_device(device),
        "representation": representation,
    }
    save_features(features_out, Features(arrays=arrays, class_names=class_names, meta=meta))
    log.info(
        "features: dim %d for %s images in %.1fs on %s",
        meta["feature_dim"],
        "/".join(str(len(arrays[f"{s}_y"])) for s in SPLITS),
        meta["seconds"],
        meta["device"],
    )
    return {**meta, **{f"{s}_size": int(len(arrays[f"{s}_y"])) for s in SPLITS}}


def _streamed_features(
    cfg: Config,
    encoder: torch.nn.Module,
    index: ShardIndex,
    mean: list[float],
    std: list[float],
    device: torch.device,
) -> tuple[torch.Tensor, np.ndarray]:
    """Features and labels of every sample of streamed shards, decoded by ``data.workers`` processes."""
    feats, labels = [], []
    with ordered_chunks(index, chunk=cfg.eval.batch_size, workers=cfg.data.workers) as chunks:
        for images, chunk_labels, _ in progress(chunks, total=None, desc="features (streamed)", unit="chunk"):
            feats.append(extract_features(encoder, images, mean, std, device=device, batch_size=cfg.eval.batch_size))
            labels.append(chunk_labels)
    if not feats:
        return torch.zeros((0, int(encoder.feature_dim))), np.zeros(0, dtype=np.int64)
    return torch.cat(feats), np.concatenate(labels)


def _measure(
    cfg: Config,
    encoder: torch.nn.Module,
    images: np.ndarray,
    feats: torch.Tensor,
    mean: list[float],
    std: list[float],
    device: torch.device,
) -> dict | None:
    """The label-free measures on the test images, logged; None (and a warning) with fewer than two."""
    if len(images) < 2:
        log.warning("representation: %d test image(s), too few for the label-free measures", len(images))
        return None
    rep = measure(
        encoder,
        images,
        feats,
        mean,
        std,
        cfg.augment,
        device=device,
        seed=cfg.data.seed,
        batch_size=cfg.eval.batch_size,
    )
    log.info(
        "representation (%d test images): RankMe %.1f of %d dimensions, alignment %.3f, uniformity %.3f",
        *(rep[k] for k in ("n_images", "rankme", "feature_dim", "alignment", "uniformity")),
    )
    return rep
