"""Atomic file writes and the on-disk formats that steps pass to each other.

Every output is written to a temporary file in the target's directory and
renamed into place, so an interrupted step never leaves a file that looks
complete. Arrays are stored as ``.npz`` and always read with
``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kubeclr.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results should get the permissions any new file gets
_FILE_MODE = 0o666 & ~_current_umask()


def make_dir(what: str, folder: Path) -> None:
    """Create ``folder`` and its parents, or raise one clear line naming ``what`` (a flag, say).

    Raises:
        UserError: a file is in the way, or the directory cannot be created.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{what} {folder}: a file is in the way (a directory is needed)") from None
    except OSError as exc:
        raise UserError(f"{what} {folder}: cannot create the directory ({exc.strerror})") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def load_stats(path: str | Path) -> tuple[list[float], list[float], dict[str, Any]]:
    """Read a ``compute_stats`` JSON: ``(mean, std, whole record)``.

    Raises:
        DataError: unreadable, or not 3 means and 3 positive standard deviations.
    """
    from kubeclr.errors import DataError

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
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file (never unpickles)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@dataclass(frozen=True)
class Split:
    """One split of the dataset as the steps exchange it.

    Attributes:
        images: uint8, (N, 3, 32, 32) — channel planes as in the CIFAR batches.
        labels: int64, (N,), values in ``range(len(class_names))``.
        class_names: the label names, index = label.
        meta: JSON-serialisable facts: ``source``, ``synthetic``, ``split``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def save_split(path: str | Path, split: Split) -> None:
    save_arrays(path, images=np.ascontiguousarray(split.images, dtype=np.uint8),
                labels=np.asarray(split.labels, dtype=np.int64),
                class_names=np.asarray(split.class_names, dtype=str),
                meta=np.asarray(json.dumps(split.meta)))


def load_split(path: str | Path) -> Split:
    arrays = load_arrays(path)
    return Split(images=arrays["images"], labels=arrays["labels"],
                 class_names=tuple(str(c) for c in arrays["class_names"]),
                 meta=json.loads(str(arrays["meta"])))
