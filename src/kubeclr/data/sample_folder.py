"""The offline ``sample-folder`` source: the synthetic ``sample`` classes written as an image folder.

Same ten drawn classes as :mod:`kubeclr.data.sample` (it is **not** real data),
saved as real PNG, JPEG and WebP files in the image folder layout — ``train/``,
``test/`` and ``unlabeled/``, no ``val/`` — so that demos and tests take exactly
the path a user's folder takes: layout scan, safe decoding, the process pool.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from kubeclr.data.sample import CLASS_NAMES, render

log = logging.getLogger(__name__)

# file format by image index: mostly lossless PNG, some JPEG and WebP
_FORMATS = (
    ("png", "PNG", {}),
    ("png", "PNG", {}),
    ("jpg", "JPEG", {"quality": 95}),
    ("webp", "WEBP", {"lossless": True}),
)


def _save(image: np.ndarray, path: Path, index: int) -> None:
    ext, fmt, options = _FORMATS[index % len(_FORMATS)]
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path.with_suffix(f".{ext}"), fmt, **options)


def write_sample_folder(root: Path, per_class: int, seed: int = 0) -> dict[str, int]:
    """Write the sample image folder under ``root``.

    Args:
        root: the target folder (created).
        per_class: train images per class; test gets a quarter of that (at least 2), and
            ``unlabeled/`` half as many images as train in all.
        seed: seed of the drawings.

    Returns:
        ``{"train": n, "test": n, "unlabeled": n}``, the files written.
    """
    log.warning("source 'sample-folder': writing a SYNTHETIC 10-class image folder (not real images)")
    counts = {"train": per_class, "test": max(2, per_class // 4), "unlabeled": per_class * len(CLASS_NAMES) // 2}
    for stream, split in enumerate(counts):
        rng = np.random.default_rng([seed, 10 + stream])
        n = counts[split]
        labels = np.repeat(np.arange(len(CLASS_NAMES)), n) if split != "unlabeled" else rng.integers(0, 10, n)
        images = render(labels, rng)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split if split == "unlabeled" else root / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            _save(image, folder / f"{i:06d}", i)
        counts[split] = len(labels)
    return counts
