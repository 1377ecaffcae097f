"""The ``extract_features`` step: every image encoded once by the frozen encoder (no head)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from kubeclr.config import Config
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.core.model import build_encoder
from kubeclr.data.files import Features, load_stats, read_split, save_features
from kubeclr.errors import DataError
from kubeclr.eval.features import extract_features

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def load_encoder(cfg: Config, path: str | Path) -> torch.nn.Module:
    """The encoder of ``cfg.model`` with the weights in ``path`` (weights-only load).

    Raises:
        DataError: unreadable file, or weights that do not fit ``cfg.model``.
    """
    encoder = build_encoder(cfg.model)
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"encoder {path}: not a weights-only torch state dict ({type(exc).__name__})") from None
    try:
        encoder.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"encoder {path}: does not match model.arch={cfg.model.arch} "
            f"width={cfg.model.width} stem={cfg.model.stem} ({first})"
        ) from None
    return encoder


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
    encoder = load_encoder(cfg, encoder_path)
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
