"""The ``extract_features`` step: every image encoded once by the frozen encoder (no head)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kubeclr.config import Config
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.core.model import load_encoder
from kubeclr.data.files import SPLITS, Features, load_stats, read_split, save_features
from kubeclr.eval.features import extract_features

log = logging.getLogger(__name__)

# What this step reads of the config: what built the encoder, and the evaluation's batch size (kubeclr.steps).
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
    """Encode the three splits with the frozen encoder and save the features.

    Returns:
        ``{"seconds", "feature_dim", "device", "train_size", "val_size", "test_size"}``.
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
        arrays[f"{name}_x"] = extract_features(
            encoder, split.images, mean, std, device=device, batch_size=cfg.eval.batch_size
        ).numpy()
        arrays[f"{name}_y"] = split.labels
    meta = {
        "seconds": time.perf_counter() - start,
        "feature_dim": int(encoder.feature_dim),
        "device": describe_device(device),
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
