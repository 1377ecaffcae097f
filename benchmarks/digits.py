"""Real images for the quality benchmark: scikit-learn's handwritten digits in the CIFAR-10 layout.

The 1,797 scans of ``sklearn.datasets.load_digits`` (8×8, 17 grey levels, UCI
"Optical Recognition of Handwritten Digits") are upsampled to 32×32 (bilinear),
shifted by up to ±2 px and given a random brightness per image, repeated on the
three colour planes, and packed as a CIFAR-10 python tarball: ``test_batch``
holds 397 images, ``data_batch_1..5`` 280 each, so the pipeline's default
``batch5`` split gives 1,120 train / 280 val / 397 test. Everything is drawn
from one seed, so the tarball's bytes are a function of the seed alone.

Unlike the synthetic ``sample`` source, the classes are not separable by colour
or a single shape cue: a recipe that learns nothing scores below a random
encoder here, which is what the benchmark needs to tell recipes apart.

    python benchmarks/digits.py OUT.tar.gz [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from kubeclr.data.cifar import META, ROOT, TEST_BATCH, TRAIN_BATCHES, dump_batch, dump_meta, pack_tarball

TEST_SIZE = 397
BATCH_SIZE = 280  # 5 × 280 + 397 = 1,797
SIZE = 32
MAX_SHIFT = 2  # pixels, each axis
BRIGHTNESS = (0.55, 1.0)  # peak grey level as a fraction of 255


def upsample(digits: np.ndarray, size: int = SIZE) -> np.ndarray:
    """``(N, 8, 8)`` values in [0, 16] -> ``(N, size, size)`` float32 in [0, 1], bilinear (pixel centres aligned)."""
    n, h, w = digits.shape
    x = digits.astype(np.float32) / 16.0
    # sample positions of the output pixel centres in input pixel coordinates
    pos = (np.arange(size, dtype=np.float32) + 0.5) * h / size - 0.5
    pos = pos.clip(0, h - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, h - 1)
    t = (pos - lo).astype(np.float32)
    rows = x[:, lo, :] * (1 - t)[None, :, None] + x[:, hi, :] * t[None, :, None]  # (N, size, 8)
    return rows[:, :, lo] * (1 - t)[None, None, :] + rows[:, :, hi] * t[None, None, :]  # (N, size, size)


def shift(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Translate each ``(size, size)`` image by whole pixels, filling with 0 (the background)."""
    n, size, _ = images.shape
    pad = np.pad(images, ((0, 0), (MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT)))
    out = np.empty_like(images)
    for i in range(n):
        top, left = MAX_SHIFT - dy[i], MAX_SHIFT - dx[i]
        out[i] = pad[i, top : top + size, left : left + size]
    return out


def digits_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as ``(uint8 (N, 3, 32, 32), int64 (N,))``, in a seeded random order."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(bunch.target))
    grey = upsample(bunch.images[order])  # (N, 32, 32) in [0, 1]
    dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(2, len(order)))
    grey = shift(grey, dy, dx) * rng.uniform(*BRIGHTNESS, size=(len(order), 1, 1)).astype(np.float32)
    images = np.repeat((grey * 255).round().astype(np.uint8)[:, None], 3, axis=1)  # (N, 3, 32, 32)
    return images, bunch.target[order].astype(np.int64)


def digits_members(seed: int = 0) -> dict[str, bytes]:
    """The seven pickled members of the digits tarball, keyed by their path in the archive."""
    images, labels = digits_arrays(seed)
    members = {f"{ROOT}/{META}": dump_meta([str(d) for d in range(10)], BATCH_SIZE)}
    members[f"{ROOT}/{TEST_BATCH}"] = dump_batch(images[:TEST_SIZE], labels[:TEST_SIZE], batch_label="digits test")
    for i, name in enumerate(TRAIN_BATCHES):
        part = slice(TEST_SIZE + i * BATCH_SIZE, TEST_SIZE + (i + 1) * BATCH_SIZE)
        members[f"{ROOT}/{name}"] = dump_batch(images[part], labels[part], batch_label=f"digits {name}")
    return members


def write_digits_tarball(path: str | Path, seed: int = 0) -> str:
    """Write the digits tarball to ``path``; return its MD5."""
    blob = pack_tarball(digits_members(seed), compresslevel=6)
    Path(path).write_bytes(blob)
    return hashlib.md5(blob).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the .tar.gz to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order, shifts and brightness (default 0)")
    args = parser.parse_args(argv)
    print(f"{args.output}  md5 {write_digits_tarball(args.output, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
