"""Per-channel mean and standard deviation of uint8 images, exact and streaming.

Pixel sums and sums of squares are accumulated as integers (exact, no
rounding at any dataset size), chunk by chunk, and only the final three
means/variances are formed in float64. Images are streamed straight from the
split's ``.npz`` file, so memory stays at one chunk however large the split.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from kubeclr.errors import DataError


def channel_mean_std(chunks: Iterable[np.ndarray]) -> tuple[list[float], list[float], int]:
    """Mean and (population) std per channel, in [0, 1] scale.

    Args:
        chunks: uint8 arrays (n, C, H, W), together the whole split.

    Returns:
        ``(mean, std, count)`` — ``C`` floats each, and the number of images.

    Raises:
        ValueError: no images, or chunks that are not uint8 (n, C, H, W).
    """
    count, pixels = 0, 0
    sums: list[int] | None = None
    squares: list[int] | None = None
    for chunk in chunks:
        if chunk.dtype != np.uint8 or chunk.ndim != 4:
            raise ValueError(f"expected uint8 (n, C, H, W) chunks, got {chunk.dtype} {chunk.shape}")
        wide = chunk.astype(np.int64)  # (n, C, H, W); per-chunk sums of squares fit in int64
        s = wide.sum(axis=(0, 2, 3))  # (C,)
        q = np.einsum("nchw,nchw->c", wide, wide)  # (C,)
        sums = [int(v) for v in s] if sums is None else [a + int(v) for a, v in zip(sums, s)]
        squares = [int(v) for v in q] if squares is None else [a + int(v) for a, v in zip(squares, q)]
        count += chunk.shape[0]
        pixels += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    if not count or sums is None or squares is None:
        raise ValueError("no images to compute statistics from")
    # Var = (P·Σx² − (Σx)²) / P², formed with Python ints: exact before the division.
    mean = [s / (pixels * 255.0) for s in sums]
    std = [math.sqrt((pixels * q - s * s) / (pixels * pixels)) / 255.0 for s, q in zip(sums, squares)]
    return mean, std, count


def check_spread(mean: list[float], std: list[float], what: str) -> None:
    """Refuse statistics that normalisation ``(x - mean) / std`` would divide by zero with.

    A channel's std is exactly 0 (the sums are exact integers) only when every pixel of every
    image has the same value there: all-grey or single-colour images.

    Raises:
        DataError: one line naming the first constant channel and its value.
    """
    names = ("R", "G", "B") if len(std) == 3 else tuple(str(c) for c in range(len(std)))
    for c, (m, s) in enumerate(zip(mean, std)):
        if s == 0:
            raise DataError(
                f"channel {names[c]} ({c}) of {what} is constant (std 0: every pixel is {round(m * 255)}); "
                "normalisation would divide by zero. Check the data (all-grey or single-colour images?)"
            )


def iter_npz_rows(path: str | Path, name: str, rows: int = 1024) -> Iterator[np.ndarray]:
    """Stream an array stored in an ``.npz`` file, ``rows`` items along axis 0 at a time.

    Args:
        path: the ``.npz`` file (as written by :func:`kubeclr.atomic.save_arrays`).
        name: the array's name (``"images"``).
        rows: items per chunk.

    Yields:
        Consecutive slices of the array, each at most ``rows`` long.

    Raises:
        DataError: missing file or array, or an array not stored in C order.
    """
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            if fortran or dtype.hasobject or not shape:
                raise DataError(f"{path}: array {name!r} is not a C-ordered numeric array")
            per_item = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            remaining = shape[0]
            while remaining:
                n = min(rows, remaining)
                buf = fh.read(n * per_item)
                if len(buf) != n * per_item:
                    raise DataError(f"{path}: array {name!r} is truncated")
                yield np.frombuffer(buf, dtype=dtype).reshape(n, *shape[1:])
                remaining -= n
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except KeyError:
        raise DataError(f"{path}: no array {name!r} in the file") from None
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{path}: not a readable split file ({exc})") from None
