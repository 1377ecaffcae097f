"""The STL-10 binary tarball: 96×96 images, 100,000 of them unlabelled, read as a stream.

Layout (Coates, Lee and Ng, 2011; https://cs.stanford.edu/~acoates/stl10/)::

    stl10_binary/train_X.bin      5,000 labelled images      train_y.bin  5,000 labels
    stl10_binary/test_X.bin       8,000 labelled images      test_y.bin   8,000 labels
    stl10_binary/unlabeled_X.bin  100,000 unlabelled images  (pretraining only)
    stl10_binary/class_names.txt  one name per line (airplane … truck)

An ``_X.bin`` file is raw uint8, 3 × 96 × 96 bytes per image: the R, G and B
planes, each stored **column-major** (the format was written from MATLAB), so
a plane read row-major must be transposed. Labels are one byte each, 1–10.
The 2.6 GB unlabelled file is never held whole: it is read in chunks, each
resized to ``data.image_size`` as it arrives and, with ``data.unlabeled_limit``,
only the drawn images kept.

A tarball with ``unlabeled_X.bin`` and none of the labelled files (``train_*``,
``test_*``) is read as a dataset without labels: ``class_names == ()`` and
empty ``train`` and ``test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kubeclr.data.cifar import Batch
from kubeclr.data.resize import resize_images
from kubeclr.data.safe_tar import open_stream, read_exactly
from kubeclr.errors import DataError

ROOT = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
COUNTS = {"train": 5000, "test": 8000, "unlabeled": 100_000}  # as distributed
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
CHUNK = 2000  # images read, transposed and resized at a time
MAX_TEXT_BYTES = 4096  # class_names.txt


@dataclass(frozen=True)
class Stl10:
    """The parts of an STL-10 tarball: ``train``/``test`` labelled, ``unlabeled`` uint8 (M, 3, S, S).

    ``class_names == ()`` (and ``train``, ``test`` empty) for a tarball of unlabelled images alone.
    """

    train: Batch
    test: Batch
    unlabeled: np.ndarray
    class_names: tuple[str, ...]


def to_planes(raw: np.ndarray) -> np.ndarray:
    """Bytes of ``n`` images as stored → uint8 ``(n, 3, 96, 96)`` row-major (each plane transposed)."""
    return raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2)


def _read_images(fh, n: int, keep: np.ndarray | None, size: int, what: str) -> np.ndarray:
    """Read ``n`` stored images (keeping the sorted indices ``keep``, or all), resized to ``size``."""
    kept = n if keep is None else len(keep)
    out = np.empty((kept, 3, size, size), dtype=np.uint8)
    filled = 0
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        chunk = to_planes(np.frombuffer(read_exactly(fh, count * IMAGE_BYTES, what), dtype=np.uint8))
        if keep is not None:
            chunk = chunk[keep[(keep >= start) & (keep < start + count)] - start]
        out[filled : filled + len(chunk)] = resize_images(chunk, size)
        filled += len(chunk)
    return out


def read_stl10(
    source: str | Path,
    *,
    size: int = SIDE,
    unlabeled_limit: int = 0,
    seed: int = 0,
    origin: str,
    fits: Callable[[str, int], None] = lambda what, n: None,
) -> Stl10:
    """Read an ``stl10_binary.tar.gz`` (or plain tar) in one streaming pass.

    Args:
        source: the tarball.
        size: side of the stored images (96 = as distributed).
        unlabeled_limit: keep this many unlabelled images, drawn at random (0 = all).
        seed: seed of that draw.
        origin: the tarball's URI, for errors.
        fits: ``fits(member, images kept)`` raises when they would not fit in memory; called
            before each image file is read, with its real size (the archive's, not the format's).

    Raises:
        DataError: an unsafe or corrupt archive, a missing file (only ``unlabeled_X.bin`` may stand
            alone), a size that is not whole images, image and label counts that differ, a label
            outside 1–10.
    """
    found: dict[str, np.ndarray] = {}
    names = CLASS_NAMES
    with open_stream(source, origin=origin) as members:
        for member, fh in members:
            base = member.name.removeprefix("./")
            if fh is None or not base.startswith(f"{ROOT}/"):
                continue
            name = base[len(ROOT) + 1 :]
            if name.endswith("_X.bin"):
                if member.size % IMAGE_BYTES:
                    raise DataError(f"{origin}: {base} is {member.size} bytes, not whole 3x96x96 images")
                n = member.size // IMAGE_BYTES
                keep = None
                if name == "unlabeled_X.bin" and 0 < unlabeled_limit < n:
                    keep = np.sort(np.random.default_rng([seed, 4]).choice(n, unlabeled_limit, replace=False))
                fits(base, n if keep is None else len(keep))
                found[name] = _read_images(fh, n, keep, size, base)
            elif name.endswith("_y.bin"):
                if member.size > COUNTS["unlabeled"]:  # one byte a label: far more than any labelled split
                    raise DataError(f"{origin}: {base} is {member.size} bytes, not an STL-10 label file")
                found[name] = np.frombuffer(read_exactly(fh, member.size, base), dtype=np.uint8).astype(np.int64) - 1
            elif name == "class_names.txt":
                text = read_exactly(fh, min(member.size, MAX_TEXT_BYTES), base).decode("utf-8", "replace")
                names = tuple(line.strip() for line in text.splitlines() if line.strip())
    labelled = [f"{split}_{xy}.bin" for split in ("train", "test") for xy in "Xy"]
    if "unlabeled_X.bin" in found and not any(name in found for name in labelled):
        none = Batch(images=np.zeros((0, 3, size, size), dtype=np.uint8), labels=np.zeros(0, dtype=np.int64))
        return Stl10(train=none, test=none, unlabeled=found["unlabeled_X.bin"], class_names=())
    splits = {}
    for split in ("train", "test"):
        x, y = found.get(f"{split}_X.bin"), found.get(f"{split}_y.bin")
        if x is None or y is None:
            missing = f"{split}_X.bin" if x is None else f"{split}_y.bin"
            raise DataError(f"{origin}: missing {ROOT}/{missing} (not an STL-10 binary tarball?)")
        if len(x) != len(y):
            raise DataError(f"{origin}: {ROOT}/{split}_X.bin has {len(x)} images but {split}_y.bin {len(y)} labels")
        bad = (y < 0) | (y >= len(names))
        if bad.any():
            raise DataError(f"{origin}: {ROOT}/{split}_y.bin holds label {int(y[bad][0]) + 1}, outside 1..{len(names)}")
        splits[split] = Batch(images=x, labels=y)
    unlabeled = found.get("unlabeled_X.bin", np.zeros((0, 3, size, size), dtype=np.uint8))
    return Stl10(train=splits["train"], test=splits["test"], unlabeled=unlabeled, class_names=names)
