"""The offline ``sample`` source: a small synthetic 10-class dataset.

It is **not CIFAR-10**. Each class is one coloured shape or texture (a red
circle, green stripes, …) drawn with per-image variation in position, size,
phase, colour, background and pixel noise, so the classes are easy to tell
apart for a linear probe while SimCLR's augmentations still have work to do.
The result is packed as a real CIFAR-10 python tarball (same member names,
same pickled dicts), so it exercises exactly the code path real data takes.
Generation is vectorised numpy and deterministic in ``(per_class, seed)``.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from kubeclr.data.cifar import META, ROOT, TEST_BATCH, TRAIN_BATCHES, dump_batch, dump_meta, pack_tarball

logger = logging.getLogger(__name__)

SIZE = 32

# Each mask function gets per-image geometry, all shaped (n, 1, 1) except the
# pixel grid x, y (1, 32, 32), and returns a boolean (n, 32, 32) foreground.
Mask = Callable[..., np.ndarray]


def _circle(dx, dy, r, phase, x, y):
    return dx**2 + dy**2 < r**2


def _square(dx, dy, r, phase, x, y):
    return np.maximum(abs(dx), abs(dy)) < r * 0.8


def _triangle(dx, dy, r, phase, x, y):
    return (dy < r * 0.8) & (abs(dx) < (dy + r) * 0.55)


def _cross(dx, dy, r, phase, x, y):
    return ((abs(dx) < r / 3.5) & (abs(dy) < r)) | ((abs(dy) < r / 3.5) & (abs(dx) < r))


def _ring(dx, dy, r, phase, x, y):
    d2 = dx**2 + dy**2
    return (d2 < r**2) & (d2 > (r * 0.55) ** 2)


def _hstripes(dx, dy, r, phase, x, y):
    return np.sin(y * 0.9 + phase) > 0


def _checker(dx, dy, r, phase, x, y):
    cell = np.round(r / 2.5).clip(3, 5)
    return ((np.floor((x + phase) / cell) + np.floor((y + phase) / cell)) % 2) == 0


def _diamond(dx, dy, r, phase, x, y):
    return abs(dx) + abs(dy) < r


def _dots(dx, dy, r, phase, x, y):
    p = 8.0
    return ((x + phase) % p - p / 2) ** 2 + ((y + phase) % p - p / 2) ** 2 < 4.0


def _vstripes(dx, dy, r, phase, x, y):
    return np.sin((x + y) * 0.7 + phase) > 0.2


# (name, foreground RGB, mask): shapes and textures chosen to differ in colour
# *and* geometry, so no single cue is needed to separate them.
CLASSES: tuple[tuple[str, tuple[int, int, int], Mask], ...] = (
    ("red-circle", (220, 40, 40), _circle),
    ("green-square", (40, 200, 60), _square),
    ("blue-triangle", (50, 80, 230), _triangle),
    ("yellow-cross", (230, 220, 40), _cross),
    ("purple-ring", (150, 60, 200), _ring),
    ("cyan-stripes", (40, 210, 220), _hstripes),
    ("orange-checker", (240, 140, 30), _checker),
    ("white-diamond", (240, 240, 240), _diamond),
    ("pink-dots", (240, 120, 180), _dots),
    ("lime-diagonals", (150, 240, 60), _vstripes),
)
CLASS_NAMES: tuple[str, ...] = tuple(c[0] for c in CLASSES)


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one image per label.

    Args:
        labels: int (N,) class indices into :data:`CLASSES`.
        rng: source of the per-image variation.

    Returns:
        uint8 (N, 3, 32, 32).
    """
    n = len(labels)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)  # (32, 32) each
    x, y = xx[None], yy[None]  # (1, 32, 32)
    centre = rng.uniform(11, 21, size=(2, n, 1, 1)).astype(np.float32)
    radius = rng.uniform(7, 11, size=(n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    background = rng.uniform(0, 110, size=(n, 3, 1, 1)).astype(np.float32)  # dark-ish, per image
    jitter = rng.normal(0, 18, size=(n, 3, 1, 1)).astype(np.float32)  # colour variation

    mask = np.zeros((n, SIZE, SIZE), dtype=bool)
    colour = np.zeros((n, 3, 1, 1), dtype=np.float32)
    for k, (_, rgb, fn) in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)
        if idx.size:
            dx, dy = x - centre[0, idx], y - centre[1, idx]  # (n_k, 32, 32) offsets from the centre
            mask[idx] = fn(dx, dy, radius[idx], phase[idx], x, y)
            colour[idx] = np.asarray(rgb, dtype=np.float32)[:, None, None]
    # int16 keeps the full-size arrays small: values stay within -18..273 before clipping.
    fg = np.clip(colour + jitter, 0, 255).astype(np.int16)  # (n, 3, 1, 1)
    images = np.where(mask[:, None], fg, background.astype(np.int16))  # (n, 3, 32, 32)
    images += rng.integers(-18, 19, size=images.shape, dtype=np.int16)  # pixel noise, uniform ±18
    return np.clip(images, 0, 255, out=images).astype(np.uint8)


def sample_members(per_class: int, seed: int = 0) -> dict[str, bytes]:
    """Pickled CIFAR-layout members of the sample dataset.

    Args:
        per_class: images per class in each of the six batch files.
        seed: seed of the generator (batch ``i`` uses ``(seed, i)``).

    Returns:
        ``{"cifar-10-batches-py/<name>": pickle bytes}`` for all seven files.
    """
    members = {f"{ROOT}/{META}": dump_meta(CLASS_NAMES, per_class * len(CLASSES))}
    for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        rng = np.random.default_rng([seed, i])
        labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class))
        members[f"{ROOT}/{name}"] = dump_batch(render(labels, rng), labels, batch_label=f"synthetic sample {name}")
    return members


def sample_tarball(per_class: int, seed: int = 0) -> bytes:
    """The sample dataset as ``.tar.gz`` bytes in the CIFAR-10 python layout (deterministic)."""
    logger.warning(
        "source 'sample': generating a SYNTHETIC 10-class dataset (%d images per class "
        "and batch) — this is not CIFAR-10",
        per_class,
    )
    return pack_tarball(sample_members(per_class, seed), compresslevel=1)
