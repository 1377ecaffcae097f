"""What the encoder was shown: a grid of augmented view pairs, drawn with the run's own augmentation.

The first thing to check when SimCLR underperforms is whether the two views of an image still
share its content (crops too small, colour too strong). :func:`view_grid` takes a few train
images and runs them through :class:`~kubeclr.core.augment.SimCLRAugment` with the run's
``augment`` section and statistics — the exact module pretraining used — then undoes the
normalisation and lays each original next to its two views, as one PNG ``data:`` URI (the
report's Content-Security-Policy allows ``data:`` images only).
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from kubeclr.config import AugmentConfig
from kubeclr.core.augment import SimCLRAugment, paired_views

PAD = 2  # pixels between tiles
MIN_TILE = 64  # tiles are enlarged (nearest neighbour) to at least this side


def view_grid(
    images: np.ndarray,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    count: int = 8,
    seed: int = 0,
) -> str:
    """A PNG data URI: one row per image — the original, view 1, view 2.

    Args:
        images: uint8 ``(N, 3, S, S)`` train images; the first ``count`` are shown.
        cfg, mean, std: the run's augmentation and normalisation.
        count: rows.
        seed: seed of the augmentation draws.
    """
    x = torch.from_numpy(np.ascontiguousarray(images[:count]))
    n = x.shape[0]
    if n == 0:
        return ""
    aug = SimCLRAugment(cfg, mean, std)
    views = paired_views(aug, x, torch.Generator().manual_seed(seed))  # (2n, 3, S', S') normalised
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    views = ((views * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
    side = views.shape[-1]
    originals = torch.nn.functional.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True)
    originals = originals.round().clamp(0, 255).to(torch.uint8)
    scale = max(1, -(-MIN_TILE // side))  # ceil
    tile = side * scale
    grid = np.full((n * (tile + PAD) + PAD, 3 * (tile + PAD) + PAD, 3), 255, dtype=np.uint8)
    for row in range(n):
        for col, img in enumerate((originals[row], views[row], views[n + row])):
            arr = img.permute(1, 2, 0).numpy().repeat(scale, axis=0).repeat(scale, axis=1)
            y, x0 = PAD + row * (tile + PAD), PAD + col * (tile + PAD)
            grid[y : y + tile, x0 : x0 + tile] = arr
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
