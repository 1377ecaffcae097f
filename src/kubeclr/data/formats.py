"""Every dataset format, read into the same splits: uint8 images, labels, class names, unlabelled images.

``data.format`` picks the reader: ``cifar10`` and ``cifar100`` (python pickles,
:mod:`~kubeclr.data.cifar`, :mod:`~kubeclr.data.cifar100`), ``stl10`` (binary,
:mod:`~kubeclr.data.stl10`) and ``imagefolder`` (:mod:`~kubeclr.data.folder`,
decoded by :mod:`~kubeclr.data.ingest`). All of them end in :class:`Splits`:
train / val / test with labels, the unlabelled pretraining images, and a
manifest of what was read. Validation is ``data.val_split`` for CIFAR-10, the
folder's own ``val/`` when it has one, and a stratified ``data.val_fraction``
of train otherwise. Limits are applied before image folders are decoded, so a
subset of a large folder decodes only that subset.

A dataset without labels (an image folder of ``unlabeled/`` alone or a flat
folder of images; an STL-10 tarball with only ``unlabeled_X.bin``) has
``class_names == ()``, empty train and val, and a seeded slice of its images
held out as test (labels -1) for label-free evaluation; the rest are the
unlabelled pretraining images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kubeclr.config import DataConfig, stored_size
from kubeclr.cpus import usable_cpus
from kubeclr.data.cifar import Batch, read_archive
from kubeclr.data.cifar100 import read_cifar100
from kubeclr.data.folder import UNLABELED, scan_folder
from kubeclr.data.images import Limits
from kubeclr.data.ingest import decode_files
from kubeclr.data.memory import check_fits
from kubeclr.data.resize import resize_images
from kubeclr.data.shards import Samples, ShardDir, decode_chosen, read_shard_samples
from kubeclr.data.split import limit, split_train_val
from kubeclr.data.stl10 import COUNTS as STL10_COUNTS
from kubeclr.data.stl10 import read_stl10
from kubeclr.errors import DataError

log = logging.getLogger(__name__)

STREAM_UNLABELED = 4  # random stream of the unlabelled subset (split.py uses 0-3)
STREAM_HELD_OUT = 5  # random stream of the held-out slice of a dataset without labels
MIN_UNLABELLED = 4  # images a dataset without labels needs: some held out, some to pretrain on
HELD_OUT_FLOOR = 256  # held out at least this many (or half the images) for label-free evaluation
HELD_OUT_CAP = 2048  # and at most this many: the label-free measures sample 2,048 (kubeclr.eval.representation)
WORKER_BYTES = 100 * 2**20  # a decoding worker's interpreter, numpy and Pillow


@dataclass
class Splits:
    """What the data step writes.

    Attributes:
        train, val, test: labelled images (uint8 ``(N, 3, S, S)``) and labels (int64 ``(N,)``).
        unlabeled: uint8 ``(M, 3, S, S)``, pretraining only (``M = 0`` for CIFAR).
        class_names: index = label. ``()`` for a dataset without labels: train and val are then
            empty, and test is the held-out slice of its images, every label -1.
        manifest: ``{file: sha256}`` of every image file read (image folders); empty for tarballs,
            whose MD5 stands for their content.
        skipped: one message per image left out (``data.on_bad_image=skip``).
    """

    train: Batch
    val: Batch
    test: Batch
    unlabeled: np.ndarray
    class_names: tuple[str, ...]
    manifest: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _val_spec(d: DataConfig) -> str:
    return d.val_split if d.format == "cifar10" else f"random:{d.val_fraction}"


def _limited(d: DataConfig, train: Batch, val: Batch, test: Batch) -> tuple[Batch, Batch, Batch]:
    return (
        limit(train, d.train_limit, d.seed, "train"),
        limit(val, d.val_limit, d.seed, "val"),
        limit(test, d.test_limit, d.seed, "test"),
    )


def _resized(batch: Batch, size: int) -> Batch:
    return Batch(images=resize_images(batch.images, size), labels=batch.labels)


def _unlabeled_subset(n: int, d: DataConfig) -> np.ndarray:
    """Sorted indices of the unlabelled images kept under ``data.unlabeled_limit``."""
    if not d.unlabeled_limit or d.unlabeled_limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([d.seed, STREAM_UNLABELED]).choice(n, d.unlabeled_limit, replace=False))


def _empty(size: int) -> Batch:
    return Batch(images=np.zeros((0, 3, size, size), dtype=np.uint8), labels=np.zeros(0, dtype=np.int64))


def held_out_count(n: int, val_fraction: float) -> int:
    """How many of ``n`` unlabelled images are held out for label-free evaluation (always leaves one).

    ``val_fraction`` of them, at least :data:`HELD_OUT_FLOOR` (or half), at most :data:`HELD_OUT_CAP`:
    the measures sample no more, and every other image pretrains.
    """
    return min(max(round(val_fraction * n), min(HELD_OUT_FLOOR, n // 2)), HELD_OUT_CAP, n - 1)


def held_out(n: int, d: DataConfig, origin: str, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(test, rest)`` of ``n`` images without labels (``names``, for the error, if known):
    a seeded held-out slice, under ``data.test_limit``, and every image not held out.

    Raises:
        DataError: fewer than :data:`MIN_UNLABELLED` images.
    """
    if n < MIN_UNLABELLED:
        found = f" ({', '.join(names)})" if names else ""
        raise DataError(
            f"{origin}: no labels and only {n} image(s){found}; at least {MIN_UNLABELLED} images needed "
            "(some are held out for label-free evaluation)"
        )
    held = held_out_count(n, d.val_fraction)
    order = np.random.default_rng([d.seed, STREAM_HELD_OUT]).permutation(n)
    test_idx, rest = np.sort(order[:held]), np.sort(order[held:])
    test = limit(Batch(images=test_idx, labels=np.full(held, -1, dtype=np.int64)), d.test_limit, d.seed, "test")
    log.info("%s: no labels: %d images, %d held out for label-free evaluation", origin, n, len(test.labels))
    return test.images, rest


def read_tarball(d: DataConfig, data: Path | bytes, origin: str) -> Splits:
    """CIFAR-10, CIFAR-100 or STL-10 from its tarball, split, limited and resized to ``data.image_size``."""
    size = stored_size(d)
    empty = np.zeros((0, 3, size, size), dtype=np.uint8)
    if d.format == "stl10":
        n_unlabeled = min(d.unlabeled_limit or STL10_COUNTS["unlabeled"], STL10_COUNTS["unlabeled"])
        total = STL10_COUNTS["train"] + STL10_COUNTS["test"] + n_unlabeled
        check_fits(f"STL-10 ({total:,} images)", total, size, factor=1.5, limit_gb=d.memory_limit_gb)
        stl = read_stl10(
            data,
            size=size,
            unlabeled_limit=d.unlabeled_limit,
            seed=d.seed,
            origin=origin,
            fits=lambda what, n: check_fits(what, n, size, factor=1.5, limit_gb=d.memory_limit_gb),
        )
        if not stl.class_names:  # unlabeled_X.bin alone: its unlabeled_limit was applied as it was read
            test_idx, rest = held_out(len(stl.unlabeled), d, origin)
            test = Batch(images=stl.unlabeled[test_idx], labels=np.full(len(test_idx), -1, dtype=np.int64))
            return Splits(_empty(size), _empty(size), test, stl.unlabeled[rest], ())
        train, val = split_train_val((stl.train,), _val_spec(d), d.seed)
        train, val, test = _limited(d, train, val, stl.test)
        return Splits(train, val, test, stl.unlabeled, stl.class_names)
    check_fits(f"{d.format} (60,000 images)", 60_000, max(size, 32), factor=2.5, limit_gb=d.memory_limit_gb)
    if d.format == "cifar100":
        train_all, test, names = read_cifar100(data, labels=d.cifar100_labels, origin=origin)
        batches: tuple[Batch, ...] = (train_all,)
    else:
        archive = read_archive(data, origin=origin)
        batches, test, names = archive.train, archive.test, archive.class_names
    train, val = split_train_val(batches, _val_spec(d), d.seed)
    train, val, test = (_resized(b, size) for b in _limited(d, train, val, test))
    return Splits(train, val, test, empty, names)


Chosen = dict[str, tuple[list[str], np.ndarray]]  # split -> (files to decode, their labels)


def _choose_labelled(d: DataConfig, files: dict[str, list[tuple[str, int]]]) -> tuple[Chosen, list[str]]:
    """The train / val / test files (split and limited) and the unlabelled files of a labelled folder."""

    def indexed(split: str) -> Batch:  # "images" = indices into files[split] until decoded
        entries = files[split]
        return Batch(images=np.arange(len(entries)), labels=np.asarray([lab for _, lab in entries], dtype=np.int64))

    if "val" in files:
        train, val = indexed("train"), indexed("val")
        val_of = "val"
    else:
        train, val = split_train_val((indexed("train"),), _val_spec(d), d.seed)
        val_of = "train"
    chosen = dict(zip(("train", "val", "test"), _limited(d, train, val, indexed("test"))))
    picked = {
        split: ([files[val_of if split == "val" else split][i][0] for i in batch.images], batch.labels)
        for split, batch in chosen.items()
    }
    unlabeled = files.get(UNLABELED, [])
    return picked, [unlabeled[i][0] for i in _unlabeled_subset(len(unlabeled), d)]


def _choose_unlabelled(d: DataConfig, entries: list[tuple[str, int]], origin: str) -> tuple[Chosen, list[str]]:
    """The held-out test files and the (limited) pretraining files of a folder without labels."""
    test_idx, rest = held_out(len(entries), d, origin, [name for name, _ in entries])
    pretrain = rest[_unlabeled_subset(len(rest), d)]
    test = ([entries[i][0] for i in test_idx], np.full(len(test_idx), -1, dtype=np.int64))
    return {"test": test}, [entries[i][0] for i in pretrain]


def read_image_folder(d: DataConfig, root: Path, origin: str) -> Splits:
    """An image folder: scan, split and limit the file lists, then decode only the chosen files.

    A folder without labels (``class_names == ()``) gets empty train and val, a held-out test
    slice with labels -1, and the rest of its images as the unlabelled ones.
    """
    layout = scan_folder(root, origin=origin)
    size = stored_size(d)
    if layout.class_names:
        chosen, unlabeled_names = _choose_labelled(d, layout.files)
    else:
        chosen, unlabeled_names = _choose_unlabelled(d, layout.files[UNLABELED], origin)
    total = sum(len(labels) for _, labels in chosen.values()) + len(unlabeled_names)
    # each decoding worker may hold one image of data.max_image_pixels, decoded and converted (~8 bytes a pixel)
    workers = d.workers or usable_cpus()
    headroom = workers * (WORKER_BYTES + 8 * d.max_image_pixels)
    check_fits(
        f"image folder ({total:,} images)", total, size, factor=1.5, limit_gb=d.memory_limit_gb, headroom=headroom
    )
    limits = Limits(max_bytes=d.max_image_bytes, max_pixels=d.max_image_pixels)
    manifest: dict[str, str] = {}
    skipped: list[str] = []
    digests: dict[str, set[str]] = {}

    def decode(split: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = decode_files(
            layout.root, names, size, limits=limits, workers=d.workers, on_bad=d.on_bad_image, desc=f"decoding {split}"
        )
        manifest.update(zip(names, out.sha256))
        digests[split] = set(out.sha256) - {""}
        skipped.extend(out.skipped)
        return out.images, out.kept

    decoded = {"train": _empty(size), "val": _empty(size)}
    for split, (names, labels) in chosen.items():
        images, kept = decode(split, names)
        if not kept.any():
            raise DataError(f"{origin}: no usable {split} images (every one was refused)")
        decoded[split] = Batch(images=images, labels=labels[kept])
    unlabeled = np.zeros((0, 3, size, size), dtype=np.uint8)
    if unlabeled_names:
        unlabeled, _ = decode(UNLABELED, unlabeled_names)
    _warn_duplicates(digests, origin)
    return Splits(decoded["train"], decoded["val"], decoded["test"], unlabeled, layout.class_names, manifest, skipped)


def _warn_duplicates(digests: dict[str, set[str]], origin: str) -> None:
    """Warn when evaluation images are byte-identical to images the encoder or the probe trains on."""
    for held_out in ("val", "test"):
        for seen in ("train", UNLABELED):
            same = len(digests.get(held_out, set()) & digests.get(seen, set()))
            if same:
                log.warning("%s: %d %s images are byte-identical to %s images", origin, same, held_out, seen)


ShardChoice = dict[str, tuple[str, np.ndarray]]  # split -> (the shard prefix it comes from, indices into its samples)


def choose_shard_samples(d: DataConfig, read: dict, origin: str) -> ShardChoice:
    """Which samples of :func:`~kubeclr.data.shards.read_shard_samples` make train, val, test and unlabeled.

    Val is the ``val-*`` shards, else a stratified ``data.val_fraction`` of train; the limits are
    drawn on the samples, before any is decoded. Shards of ``unlabeled-*`` alone are a dataset
    without labels (a held-out test slice).
    """
    samples, names = read["samples"], read["class_names"]
    pool = samples.get("unlabeled", Samples())

    def indexed(prefix: str) -> Batch:  # "images" = indices into the prefix's samples until decoded
        return Batch(images=np.arange(len(samples[prefix].labels)), labels=np.asarray(samples[prefix].labels))

    if not names:
        test_idx, rest = held_out(len(pool.labels), d, origin)
        return {"test": ("unlabeled", test_idx), "unlabeled": ("unlabeled", rest[_unlabeled_subset(len(rest), d)])}
    if "val" in samples:
        train, val = indexed("train"), indexed("val")
    else:
        train, val = split_train_val((indexed("train"),), _val_spec(d), d.seed)
    train, val, test = _limited(d, train, val, indexed("test"))
    return {
        "train": ("train", train.images),
        "val": ("val" if "val" in samples else "train", val.images),
        "test": ("test", test.images),
        "unlabeled": ("unlabeled", _unlabeled_subset(len(pool.labels), d)),
    }


def read_shards(d: DataConfig, where: ShardDir | Path, origin: str) -> Splits:
    """WebDataset shards (:mod:`kubeclr.data.shards`) into the same splits as every other format.

    The splits are :func:`choose_shard_samples`'; the memory check runs before decoding, as for
    image folders. The manifest is each shard's SHA-256.
    """
    read = read_shard_samples(d, where, origin)
    samples, names, size = read["samples"], read["class_names"], stored_size(d)
    manifest = {name: fact["sha256"] for shards in read["shards"].values() for name, fact in shards.items()}
    chosen = choose_shard_samples(d, read, origin)
    encoded = sum(len(data) for got in samples.values() for data in got.data)
    total = sum(len(idx) for _, idx in chosen.values())
    check_fits(f"shards ({total:,} images)", total, size, factor=1.5, limit_gb=d.memory_limit_gb, headroom=encoded)
    out = {split: _empty(size) for split in ("train", "val", "test", "unlabeled")}
    for split, (prefix, idx) in chosen.items():
        out[split] = decode_chosen(samples[prefix], idx, d) if len(idx) else _empty(size)
        if split == "test" and len(idx) and not len(out[split].labels):
            raise DataError(f"{origin}: no usable {split} images (every one was refused)")
    skipped = [message for got in samples.values() for message in got.skipped]
    for message in skipped:
        log.warning("skipped: %s", message)
    return Splits(out["train"], out["val"], out["test"], out["unlabeled"].images, names, manifest, skipped)
