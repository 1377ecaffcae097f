"""The quality suite's datasets: their splits, a smaller training subset, and the CIFAR-10 tarball of any split.

Every dataset is real images shipped inside installed packages (no download):

- ``digits``: scikit-learn's scanned handwritten digits (``benchmarks/digits.py``), 10 classes;
- ``scenes``, ``closeups``: patches of five natural photographs, labelled by photo
  (``benchmarks/photos.py``), 5 classes.

The benchmark's baselines train and test on :meth:`Dataset.splits`; the
pipeline reads the same arrays from :func:`write_tarball`'s file, whose
``batch5`` split (``data_batch_1..4`` train, ``data_batch_5`` val,
``test_batch`` test) gives them back unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import digits
import numpy as np
import photos

from kubeclr.data.cifar import META, ROOT, TEST_BATCH, TRAIN_BATCHES, dump_batch, dump_meta, pack_tarball

Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 (N, 3, 32, 32), int64 (N,))


@dataclass(frozen=True)
class Dataset:
    """One dataset of the suite.

    Attributes:
        name: its name on the command line and in the record.
        source: where the images come from, in words.
        class_names: label names, index = label.
        build: ``seed -> Splits``; deterministic.
    """

    name: str
    source: str
    class_names: tuple[str, ...]
    build: Callable[[int], Splits]

    def splits(self, seed: int = 0) -> Splits:
        return self.build(seed)


def digit_splits(seed: int = 0) -> Splits:
    """The pipeline's default split of the digits tarball: batches 1-4 train, batch 5 val, test batch test."""
    images, labels = digits.digits_arrays(seed)
    t, b = digits.TEST_SIZE, digits.BATCH_SIZE
    return {
        "train": (images[t : t + 4 * b], labels[t : t + 4 * b]),
        "val": (images[t + 4 * b :], labels[t + 4 * b :]),
        "test": (images[:t], labels[:t]),
    }


def photo_splits(name: str) -> Callable[[int], Splits]:
    def build(seed: int) -> Splits:
        return {s: (x, y) for s, (x, y, _) in photos.patch_splits(photos.PATCH_SETS[name], seed).items()}

    return build


def _photo_source(name: str) -> str:
    spec = photos.PATCH_SETS[name]
    colour = "luminance" if spec.grey else "own colours"
    return (
        f"benchmarks/photos.py: {spec.window}-px windows of 5 photographs (sklearn china, flower; "
        f"pywt aero, ascent, camera) -> 32 px, {colour}, label = photo, splits on disjoint {spec.tile}-px tiles"
    )


DATASETS = {
    "digits": Dataset(
        "digits", "sklearn load_digits via benchmarks/digits.py", tuple(str(d) for d in range(10)), digit_splits
    ),
    **{name: Dataset(name, _photo_source(name), photos.SOURCES, photo_splits(name)) for name in ("scenes", "closeups")},
}


def cap_train(splits: Splits, limit: int) -> Splits:
    """``splits`` with train cut to about ``limit`` images: the first ``limit // C`` of each class, order kept."""
    x, y = splits["train"]
    classes = np.unique(y)
    per_class = max(1, limit // len(classes))
    keep = np.zeros(len(y), dtype=bool)
    for c in classes:
        keep[np.flatnonzero(y == c)[:per_class]] = True
    return {**splits, "train": (x[keep], y[keep])}


def tarball_members(splits: Splits, class_names: tuple[str, ...], label: str) -> dict[str, bytes]:
    """The seven pickled members: train in ``data_batch_1..4``, val as ``data_batch_5``, test as ``test_batch``."""
    train = [np.array_split(a, 4) for a in splits["train"]]  # ([4 image parts], [4 label parts])
    parts = [(train[0][i], train[1][i]) for i in range(4)] + [splits["val"]]
    members = {f"{ROOT}/{META}": dump_meta(list(class_names), len(parts[0][1]))}
    members[f"{ROOT}/{TEST_BATCH}"] = dump_batch(*splits["test"], batch_label=f"{label} test")
    for name, (x, y) in zip(TRAIN_BATCHES, parts):
        members[f"{ROOT}/{name}"] = dump_batch(x, y, batch_label=f"{label} {name}")
    return members


def write_tarball(path: str | Path, splits: Splits, class_names: tuple[str, ...], label: str) -> str:
    """Write ``splits`` as a CIFAR-10 python tarball (deterministic bytes); return its MD5."""
    blob = pack_tarball(tarball_members(splits, class_names, label), compresslevel=6)
    Path(path).write_bytes(blob)
    return hashlib.md5(blob).hexdigest()
