"""The ``download_split`` step: fetch, verify and read the dataset; write train / val / test.

Any format (``data.format``) ends in the same three split files: uint8 images,
labels and class names; the train file also holds the unlabelled images that
only pretraining reads. Outputs appear only after everything they depend on
has been fetched, verified and decoded, and all of them are renamed into
place together, so a failed step leaves no file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from kubeclr.atomic import atomic_path, write_json
from kubeclr.config import Config, stored_size
from kubeclr.data.files import SPLITS, Split, save_split
from kubeclr.data.formats import Splits, read_image_folder, read_shards, read_tarball
from kubeclr.data.stream import META_KEY, index_shards
from kubeclr.storage.folders import checked_shard_dir, image_folder
from kubeclr.storage.sources import fetch_tarball

log = logging.getLogger(__name__)

# What this step reads of the config: the data section, and the mirror the tarball may come from (kubeclr.steps).
READS: tuple[str, ...] = ("data", "storage.mirror_uri")


def read_dataset(cfg: Config) -> tuple[Splits, dict]:
    """The splits and the facts every split file's ``meta`` carries."""
    d = cfg.data
    if d.format == "imagefolder":
        with image_folder(d, cfg.storage.mirror_uri) as folder:
            splits = read_image_folder(d, folder.path, folder.source)
        return splits, {"source": folder.source, "synthetic": folder.synthetic, "md5": ""}
    if d.format == "webdataset":
        where = checked_shard_dir(d)  # a folder, or an s3:// prefix read as streams (nothing downloaded first)
        return read_shards(d, where, where.source), {"source": where.source, "synthetic": False, "md5": ""}
    tarball = fetch_tarball(d, cfg.storage.mirror_uri)
    if tarball.synthetic:
        log.warning("the splits hold SYNTHETIC sample data, not CIFAR-10")
    splits = read_tarball(d, tarball.data, tarball.source)
    return splits, {"source": tarball.source, "synthetic": tarball.synthetic, "md5": tarball.md5}


def manifest_digest(manifest: dict[str, str]) -> str:
    """One SHA-256 over the sorted ``file: sha256`` pairs (equal inputs, equal digests)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run(
    cfg: Config,
    train_out: str | Path,
    val_out: str | Path,
    test_out: str | Path,
    manifest_out: str | Path | None = None,
) -> dict:
    """Fetch, verify and read the dataset ``cfg.data`` names; write the train/val/test splits.

    Args:
        cfg: the run's config (``data.*``, ``storage.mirror_uri``).
        train_out, val_out, test_out: where to write the split files
            (:func:`kubeclr.data.files.save_split` format); train also holds the unlabelled images.
        manifest_out: where to write the manifest JSON (``files``: image file → SHA-256,
            ``sha256`` of that list, the tarball's ``md5``, the sizes); None = not written.

    Returns:
        ``{"source", "synthetic", "md5", "format", "image_size", "train_size", "val_size",
        "test_size", "unlabeled_size", "skipped_images", "manifest_sha256", "class_names",
        "seconds"}``.

    Raises:
        DataError: the source cannot be fetched, verified or safely read (the config's
            values were checked when it was resolved).
    """
    start = time.perf_counter()
    if cfg.data.stream:
        return _index(cfg, start, {"train": train_out, "val": val_out, "test": test_out}, manifest_out)
    splits, origin = read_dataset(cfg)
    sizes = {f"{name}_size": len(getattr(splits, name).labels) for name in SPLITS}
    facts = {
        **origin,
        "format": cfg.data.format,
        "image_size": stored_size(cfg.data),
        **sizes,
        "unlabeled_size": len(splits.unlabeled),
        "skipped_images": len(splits.skipped),
        "manifest_sha256": manifest_digest(splits.manifest) if splits.manifest else "",
    }
    seconds = time.perf_counter() - start
    outs = {"train": Path(train_out), "val": Path(val_out), "test": Path(test_out)}
    # Every file is renamed into place only after all of them were written.
    with contextlib.ExitStack() as stack:
        tmps = {name: stack.enter_context(atomic_path(path)) for name, path in outs.items()}
        manifest_tmp = stack.enter_context(atomic_path(manifest_out)) if manifest_out else None
        for name in SPLITS:
            batch = getattr(splits, name)
            save_split(
                tmps[name],
                Split(
                    images=batch.images,
                    labels=batch.labels,
                    class_names=splits.class_names,
                    meta={**facts, "seconds": seconds, "split": name},
                    unlabeled=splits.unlabeled if name == "train" else None,
                ),
            )
        if manifest_tmp is not None:
            write_json(manifest_tmp, {**facts, "files": splits.manifest, "skipped": splits.skipped})
    log.info(
        "splits from %s (%s, %d px): %s, unlabelled %d%s",
        origin["source"],
        cfg.data.format,
        facts["image_size"],
        sizes,
        facts["unlabeled_size"],
        f", {len(splits.skipped)} images skipped" if splits.skipped else "",
    )
    return {**facts, "class_names": list(splits.class_names), "seconds": seconds}


def _index(cfg: Config, start: float, outs: dict[str, str | Path], manifest_out: str | Path | None) -> dict:
    """``data.stream``: split files that index the shards (:mod:`kubeclr.data.stream`), no decoded pixel."""
    d = cfg.data
    where = checked_shard_dir(d)
    index = index_shards(d, where, where.source)
    size = stored_size(d)
    facts = {
        "source": where.source,
        "synthetic": False,
        "md5": "",
        "format": d.format,
        "image_size": size,
        **{f"{name}_size": len(index["labels"][name]) for name in SPLITS},
        "unlabeled_size": len(index["refs"]["unlabeled"]),
        "skipped_images": len(index["skipped"]),
        "manifest_sha256": manifest_digest(index["manifest"]),
        "streamed": True,
    }
    seconds = time.perf_counter() - start
    with contextlib.ExitStack() as stack:
        tmps = {name: stack.enter_context(atomic_path(path)) for name, path in outs.items()}
        manifest_tmp = stack.enter_context(atomic_path(manifest_out)) if manifest_out else None
        for name in SPLITS:
            save_split(
                tmps[name],
                Split(
                    images=np.zeros((0, 3, size, size), dtype=np.uint8),
                    labels=index["labels"][name],
                    class_names=index["class_names"],
                    meta={**facts, "seconds": seconds, "split": name, META_KEY: index["meta"]},
                    refs=index["refs"][name],
                    unlabeled_refs=index["refs"]["unlabeled"] if name == "train" else None,
                ),
            )
        if manifest_tmp is not None:
            write_json(manifest_tmp, {**facts, "files": index["manifest"], "skipped": index["skipped"]})
    for message in index["skipped"]:
        log.warning("skipped: %s", message)
    log.info(
        "indexed %d shards at %s for streaming (%d px, nothing decoded): %s, unlabelled %d",
        len(index["manifest"]),
        where.source,
        size,
        {name: facts[f"{name}_size"] for name in SPLITS},
        facts["unlabeled_size"],
    )
    return {**facts, "class_names": list(index["class_names"]), "seconds": seconds}
