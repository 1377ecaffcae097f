"""The files the pipeline steps pass to each other: splits, statistics, arrays.

A split is an ``.npz`` of uint8 images, int64 labels, the class names and a
JSON ``meta`` string; arrays are always read with ``allow_pickle=False``, so a
file from an earlier step can never run code. Every write is atomic
(:mod:`kubeclr.atomic`). Readers that a step calls on its inputs raise
:class:`~kubeclr.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from kubeclr.atomic import atomic_path, read_json
from kubeclr.errors import DataError

T = TypeVar("T")

SPLITS = ("train", "val", "test")  # the labelled split files the steps pass on, in this order


def read_input(what: str, path: str | Path, reader: Callable[[str | Path], T]) -> T:
    """``reader(path)``, with any failure to read or parse it as one :class:`DataError` naming ``what``."""
    try:
        return reader(path)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{what} {path}: no such file") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{what} {path}: cannot be read ({type(exc).__name__}: {exc})") from None


def load_stats(path: str | Path) -> tuple[list[float], list[float], dict[str, Any]]:
    """Read a ``compute_stats`` JSON: ``(mean, std, whole record)``.

    Raises:
        DataError: unreadable, or not 3 means and 3 positive standard deviations.
    """
    try:
        stats = read_json(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"stats file {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        mean, std = [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"stats file {path}: expected 'mean' and 'std' lists of 3 numbers") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DataError(f"stats file {path}: expected 3 means and 3 positive stds")
    return mean, std, stats


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named arrays to ``path`` (``.npz``, uncompressed), atomically.

    Object arrays are refused: every array must load without pickle.
    """
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it could not be loaded without pickle")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file (never unpickles)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@dataclass(frozen=True)
class Split:
    """One split of the dataset as the steps exchange it.

    Attributes:
        images: uint8, (N, 3, S, S) — labelled images, channel planes as in the CIFAR batches.
        labels: int64, (N,), values in ``range(len(class_names))``; -1 (every one) for a dataset
            without labels.
        class_names: the label names, index = label; ``()`` for a dataset without labels (its train
            and val splits are empty, its test split is images held out for label-free evaluation).
        meta: JSON-serialisable facts: ``source``, ``synthetic``, ``split``, ``format``, ``image_size``.
        unlabeled: uint8 (M, 3, S, S) — the train split's unlabelled images, for pretraining only
            (empty elsewhere, and unless asked for when read: evaluation never loads them).
        refs, unlabeled_refs: streamed shards (``data.stream``): no images (``(0, 3, S, S)``), but
            each sample's int64 (shard, position) address, ``meta["stream"]`` naming the shards
            (:mod:`kubeclr.data.stream`); None otherwise.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    meta: dict[str, Any]
    unlabeled: np.ndarray | None = None
    refs: np.ndarray | None = None
    unlabeled_refs: np.ndarray | None = None

    def pretraining_images(self) -> np.ndarray:
        """Labelled and unlabelled images together (labels are not part of it)."""
        if self.unlabeled is None or not len(self.unlabeled):
            return self.images
        return np.concatenate([self.images, self.unlabeled])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def save_split(path: str | Path, split: Split) -> None:
    extra = {} if split.unlabeled is None else {"unlabeled": np.ascontiguousarray(split.unlabeled, dtype=np.uint8)}
    for name in ("refs", "unlabeled_refs"):
        if getattr(split, name) is not None:
            extra[name] = np.asarray(getattr(split, name), dtype=np.int64).reshape(-1, 2)
    save_arrays(
        path,
        images=np.ascontiguousarray(split.images, dtype=np.uint8),
        labels=np.asarray(split.labels, dtype=np.int64),
        class_names=np.asarray(split.class_names, dtype=str),
        meta=np.asarray(json.dumps(split.meta)),
        **extra,
    )


def load_split(path: str | Path, *, unlabeled: bool = False) -> Split:
    """A split file; its unlabelled images are read only with ``unlabeled=True`` (the pretrain step)."""
    with np.load(path, allow_pickle=False) as npz:
        return Split(
            images=npz["images"],
            labels=npz["labels"],
            class_names=tuple(str(c) for c in npz["class_names"]),
            meta=json.loads(str(npz["meta"])),
            unlabeled=npz["unlabeled"] if unlabeled and "unlabeled" in npz.files else None,
            refs=npz["refs"] if "refs" in npz.files else None,
            unlabeled_refs=npz["unlabeled_refs"] if unlabeled and "unlabeled_refs" in npz.files else None,
        )


def read_split(what: str, path: str | Path, *, unlabeled: bool = False) -> Split:
    """:func:`load_split` for a step's input: any failure is one :class:`DataError` naming ``what``."""
    return read_input(what, path, lambda p: load_split(p, unlabeled=unlabeled))


@dataclass(frozen=True)
class Features:
    """The ``extract_features`` output: float32 ``(N, D)`` features and int64 labels of each split.

    Attributes:
        arrays: ``train_x, val_x, test_x`` (N, D) and ``train_y, val_y, test_y`` (N,).
        class_names: the label names, index = label.
        meta: ``seconds``, ``feature_dim``, ``device``.
    """

    arrays: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    meta: dict[str, Any]


FEATURE_KEYS = tuple(f"{s}_{v}" for s in ("train", "val", "test") for v in "xy")


def save_features(path: str | Path, features: Features) -> None:
    save_arrays(
        path,
        **features.arrays,
        class_names=np.asarray(features.class_names, dtype=str),
        meta=np.asarray(json.dumps(features.meta)),
    )


def read_features(path: str | Path) -> Features:
    """A features file, for a step's input (any failure is one :class:`DataError` naming it)."""
    arrays = read_input("features file", path, load_arrays)
    try:
        return Features(
            arrays={k: arrays[k] for k in FEATURE_KEYS},
            class_names=tuple(str(c) for c in arrays["class_names"]),
            meta=json.loads(str(arrays["meta"])),
        )
    except (KeyError, ValueError) as exc:
        raise DataError(f"features file {path}: missing or malformed array ({exc})") from None


def split_facts(what: str, path: str | Path) -> tuple[int, dict[str, Any]]:
    """Size and ``meta`` of a split file without loading its images."""

    def reader(p: str | Path) -> tuple[int, dict[str, Any]]:
        with np.load(p, allow_pickle=False) as npz:
            return int(npz["labels"].shape[0]), json.loads(str(npz["meta"]))

    return read_input(what, path, reader)
