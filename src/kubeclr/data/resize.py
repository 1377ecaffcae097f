"""Resize square uint8 image arrays once, at ingestion, with an antialiased filter."""

from __future__ import annotations

import numpy as np

CHUNK = 1024  # images per interpolation call: bounds the float32 working copy


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(N, 3, H, W)`` → uint8 ``(N, 3, size, size)`` (bilinear with antialiasing; unchanged if equal).

    Down-scaling with antialias averages over the source pixels each output covers
    (as Pillow does), so small images are not aliased; the result is rounded back to uint8.
    """
    if images.shape[-2:] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    out = np.empty((images.shape[0], 3, size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + CHUNK])).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
