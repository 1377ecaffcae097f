"""The CIFAR-10 python tarball: layout, safe parsing, validation and writing.

Layout (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny
Images"; https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-10-batches-py/data_batch_1 … data_batch_5   (train, 10000 images each)
    cifar-10-batches-py/test_batch                    (test, 10000 images)
    cifar-10-batches-py/batches.meta                  (b"label_names")

Each batch is a pickled dict with ``b"data"`` — a (N, 3072) uint8 array whose
rows hold the R plane, then G, then B, each 32×32 row-major — and
``b"labels"``, N ints. Parsing goes through :mod:`kubeclr.data.safe_tar` and
:mod:`kubeclr.data.safe_pickle`, so a hostile archive is refused before any of
its content runs or lands on disk.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from kubeclr.data.safe_pickle import safe_loads
from kubeclr.data.safe_tar import read_members
from kubeclr.errors import DataError

ROOT = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_NAMES = (*TRAIN_BATCHES, TEST_BATCH, META)
IMAGE_SHAPE = (3, 32, 32)
ROW = 3 * 32 * 32  # 3072 values per image


@dataclass(frozen=True)
class Batch:
    """Images and their labels. ``images``: uint8 (N, 3, S, S) (32 in the CIFAR files); ``labels``: int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class CifarArchive:
    """Everything a CIFAR-10 tarball holds, validated.

    Attributes:
        train: the five train batches, in order ``data_batch_1..5``.
        test: ``test_batch``.
        class_names: ``label_names`` from ``batches.meta``, index = label.
    """

    train: tuple[Batch, ...]
    test: Batch
    class_names: tuple[str, ...]


def _get(d: Mapping[Any, Any], key: str) -> Any:
    """Read ``key`` from a batch dict whose keys are bytes (Python 2 pickles) or str."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def _as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_meta(obj: Any, *, origin: str, key: str = "label_names") -> tuple[str, ...]:
    """Validate ``batches.meta`` (CIFAR-100: ``meta``) and return its class names, read from ``key``.

    Raises:
        DataError: not a dict, or ``key`` missing or not a list of names.
    """
    names = _get(obj, key) if isinstance(obj, dict) else None
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{origin}: expected a dict with {key!r} (a list of names)")
    return tuple(_as_text(n) for n in names)


def parse_batch(obj: Any, num_classes: int, *, origin: str, labels_key: str = "labels") -> Batch:
    """Validate one batch dict and return it as arrays.

    Args:
        obj: the unpickled batch.
        num_classes: number of class names; labels must lie in ``0..num_classes-1``.
        origin: name of the batch, for errors.
        labels_key: the labels' key (CIFAR-100: ``fine_labels`` or ``coarse_labels``).

    Raises:
        DataError: missing keys, data not (N, 3072) uint8, label count or range wrong.
    """
    if not isinstance(obj, dict):
        raise DataError(f"{origin}: expected a dict, got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, labels_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{origin}: expected keys 'data' (numpy array) and {labels_key!r}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        raise DataError(f"{origin}: 'data' has shape {data.shape} and dtype {data.dtype}; expected (N, {ROW}) uint8")
    try:
        labels_arr = np.asarray(labels)
        if labels_arr.ndim != 1 or not np.issubdtype(labels_arr.dtype, np.integer):
            raise ValueError
        labels_arr = labels_arr.astype(np.int64)
    except (ValueError, TypeError):
        raise DataError(f"{origin}: {labels_key!r} must be a list of integers") from None
    if labels_arr.shape[0] != data.shape[0]:
        raise DataError(f"{origin}: {data.shape[0]} images but {labels_arr.shape[0]} labels")
    bad = (labels_arr < 0) | (labels_arr >= num_classes)
    if bad.any():
        raise DataError(f"{origin}: label {int(labels_arr[bad][0])} is outside 0..{num_classes - 1}")
    # (N, 3072) -> (N, 3, 32, 32): R, G, B planes, each row-major.
    return Batch(images=np.ascontiguousarray(data.reshape(-1, *IMAGE_SHAPE)), labels=labels_arr)


def pickled_members(
    source: str | Path | bytes, root: str, names: Sequence[str], *, origin: str, dataset: str
) -> Callable[[str], Any]:
    """Read ``root/<name>`` for every name from a tarball; return ``load(name)``, its safe unpickling.

    Each member is unpickled once, on demand, and its bytes released.

    Raises:
        DataError: an unsafe or corrupt archive, or a missing member (naming ``dataset``).
    """
    members = read_members(source, [f"{root}/{n}" for n in names], origin=origin)
    missing = [n for n in names if f"{root}/{n}" not in members]
    if missing:
        raise DataError(f"{origin}: missing {root}/{missing[0]} (not a {dataset} python tarball?)")

    def load(name: str) -> Any:
        return safe_loads(members.pop(f"{root}/{name}"), origin=f"{origin}:{root}/{name}")

    return load


def read_archive(source: str | Path | bytes, *, origin: str) -> CifarArchive:
    """Read, safely unpickle and validate a CIFAR-10 python tarball.

    Args:
        source: path of the ``.tar.gz`` or its bytes.
        origin: name of the tarball (path or URI) used in every error.

    Returns:
        The validated :class:`CifarArchive`.

    Raises:
        DataError: unsafe or corrupt archive, missing batch, unsafe pickle,
            wrong shapes or labels.
    """
    load = pickled_members(source, ROOT, BATCH_NAMES, origin=origin, dataset="CIFAR-10")
    class_names = parse_meta(load(META), origin=f"{origin}:{ROOT}/{META}")
    train = tuple(parse_batch(load(n), len(class_names), origin=f"{origin}:{ROOT}/{n}") for n in TRAIN_BATCHES)
    test = parse_batch(load(TEST_BATCH), len(class_names), origin=f"{origin}:{ROOT}/{TEST_BATCH}")
    return CifarArchive(train=train, test=test, class_names=class_names)


# -- writing (the 'sample' source and test fixtures) ------------------------------


def dump_batch(images: np.ndarray, labels: Sequence[int], *, batch_label: str = "") -> bytes:
    """Pickle one batch in the CIFAR layout.

    Args:
        images: uint8 (N, 3, 32, 32).
        labels: N ints.
        batch_label: the batch's description string.
    """
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), ROW)  # (N, 3072)
    return pickle.dumps(
        {b"batch_label": batch_label.encode(), b"labels": [int(x) for x in labels], b"data": data}, protocol=4
    )


def dump_meta(class_names: Sequence[str], per_batch: int) -> bytes:
    """Pickle ``batches.meta`` for ``class_names``."""
    return pickle.dumps(
        {b"label_names": [n.encode() for n in class_names], b"num_cases_per_batch": per_batch, b"num_vis": ROW},
        protocol=4,
    )


def pack_tarball(members: Mapping[str, bytes], *, compresslevel: int = 6) -> bytes:
    """Pack ``{name: bytes}`` into a deterministic ``.tar.gz`` (fixed mtimes, sorted order)."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=compresslevel) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dirs = sorted({str(Path(n).parent) for n in members} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(members[name]), 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()
