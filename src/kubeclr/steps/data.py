"""Pipeline steps ``download_split`` and ``compute_stats``: paths in, files out.

Each function is the one library call behind a KFP component (and the CLI's
local run). Outputs appear only after everything they depend on has been
fetched, verified and parsed, and each is written atomically, so a failed
step leaves no file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zipfile
from pathlib import Path

import numpy as np

from kubeclr.config import Config
from kubeclr.data.cifar import Batch, read_archive
from kubeclr.data.sources import fetch_tarball
from kubeclr.data.split import limit, split_train_val
from kubeclr.data.stats import channel_mean_std, iter_npz_rows
from kubeclr.errors import DataError
from kubeclr.io import Split, atomic_path, save_split, write_json

logger = logging.getLogger(__name__)


def download_split(cfg: Config, train_out: str | Path, val_out: str | Path, test_out: str | Path) -> dict:
    """Fetch, verify and parse the CIFAR-10 tarball; write the train/val/test splits.

    Uses ``cfg.data`` (source, md5, val_split, limits, seed, cache_dir,
    sample_per_class) and ``cfg.storage.mirror_uri``.

    Args:
        cfg: the full config.
        train_out, val_out, test_out: where to write the split files
            (:func:`kubeclr.io.save_split` format).

    Returns:
        ``{"source", "synthetic", "md5", "train_size", "val_size", "test_size",
        "class_names", "seconds"}``.

    Raises:
        DataError: the source cannot be fetched, verified or safely parsed.
        ConfigError: a malformed ``data.md5`` or ``data.val_split``.
    """
    start = time.perf_counter()
    d = cfg.data
    tarball = fetch_tarball(d, cfg.storage.mirror_uri)
    archive = read_archive(tarball.data, origin=tarball.source)
    train, val = split_train_val(archive.train, d.val_split, d.seed)
    splits: dict[str, Batch] = {
        "train": limit(train, d.train_limit, d.seed, "train"),
        "val": limit(val, d.val_limit, d.seed, "val"),
        "test": limit(archive.test, d.test_limit, d.seed, "test"),
    }
    seconds = time.perf_counter() - start
    if tarball.synthetic:
        logger.warning("the splits hold SYNTHETIC sample data, not CIFAR-10")
    meta = {"source": tarball.source, "synthetic": tarball.synthetic, "seconds": seconds, "md5": tarball.md5}
    outs = {"train": Path(train_out), "val": Path(val_out), "test": Path(test_out)}
    # All three files are renamed into place only after all three were written.
    with contextlib.ExitStack() as stack:
        tmps = {name: stack.enter_context(atomic_path(path)) for name, path in outs.items()}
        for name, batch in splits.items():
            save_split(tmps[name], Split(images=batch.images, labels=batch.labels,
                                         class_names=archive.class_names, meta={**meta, "split": name}))
    sizes = {f"{name}_size": int(len(b.labels)) for name, b in splits.items()}
    logger.info("splits from %s: %s", tarball.source, sizes)
    return {"source": tarball.source, "synthetic": tarball.synthetic, "md5": tarball.md5, **sizes,
            "class_names": list(archive.class_names), "seconds": seconds}


def _split_meta(path: Path) -> dict:
    """The ``meta`` entry of a split file, read without loading the images."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open("meta.npy") as fh:
            return json.loads(str(np.lib.format.read_array(fh, allow_pickle=False)))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{path}: not a split file written by download_split ({exc})") from None


def compute_stats(cfg: Config, train_path: str | Path, stats_out: str | Path) -> dict:
    """Per-channel mean/std of the train split, in [0, 1], streamed and exact.

    Args:
        cfg: the full config (no keys are needed today; kept for the step contract).
        train_path: the train split file.
        stats_out: where to write the stats JSON.

    Returns:
        The stats dict: ``{"mean", "std", "count", "seconds", "synthetic"}``.

    Raises:
        DataError: a missing or malformed split file.
    """
    del cfg  # the statistics have no parameters
    start = time.perf_counter()
    train_path = Path(train_path)
    meta = _split_meta(train_path)
    try:
        mean, std, count = channel_mean_std(iter_npz_rows(train_path, "images"))
    except ValueError as exc:
        raise DataError(f"{train_path}: {exc}") from None
    stats = {"mean": mean, "std": std, "count": count, "seconds": time.perf_counter() - start,
             "synthetic": bool(meta.get("synthetic", False))}
    write_json(stats_out, stats)
    logger.info("train statistics over %d images: mean %s std %s", count,
                [round(m, 4) for m in mean], [round(s, 4) for s in std])
    return stats
