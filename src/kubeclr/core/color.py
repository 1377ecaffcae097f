"""Colour operations of the SimCLR distortion on batched float images in [0, 1].

Brightness, contrast, saturation and hue exactly as torchvision's functional
ops (which the tests check against), each with one factor per sample, and
:func:`jitter_in_order`, which applies all four in a per-sample order
(torchvision ``ColorJitter`` semantics, Chen et al. 2020, arXiv:2002.05709,
App. A) with one HSV round trip per batch. Randomness lives in
:func:`kubeclr.core.augment.color_jitter`; everything here is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, exactly as torchvision rgb_to_grayscale


def grayscale(x: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma."""
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = x.unbind(1)
    maxc = x.amax(1)  # values only: max(1) also computes indices (~25x slower on CPU)
    minc = x.amin(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = (
        torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    )
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`: ``c = v - v·s·clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6h) mod 6``."""
    h, s, v = x.unbind(1)
    # n = 5, 3, 1 for R, G, B, made on the device: torch.tensor([5., 3., 1.], device=…) is a
    # blocking host-to-device copy on CUDA, once per batch
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6 * h.unsqueeze(1)) % 6
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def per_sample(f: Tensor) -> Tensor:
    """``(B,)`` per-sample values as ``(B, 1, 1, 1)``, to broadcast over images."""
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * per_sample(f)).clamp(0, 1)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    m = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (m + (x - m) * per_sample(f)).clamp(0, 1)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    gray = grayscale(x)
    return (gray + (x - gray) * per_sample(f)).clamp(0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))


_IDENTITY = 3  # slot code of "no operation" in the blend slots of jitter_in_order


def jitter_in_order(x: Tensor, factors: Tensor, shift: Tensor, order: Tensor) -> Tensor:
    """Apply brightness, contrast, saturation and hue to every sample in its own order.

    Brightness, contrast and saturation are one blend ``base + (x - base)·f``
    with base 0, the mean luma and the per-pixel luma respectively, so one
    blend per position serves all three. Hue (the expensive HSV round trip)
    is computed once: each sample's order is rewritten as three blend slots
    before its hue position, the hue shift, then three blend slots after it,
    with identity (``f = 1``, base 0, exact) padding the unused slots.

    Args:
        x: ``(B, 3, H, W)`` in [0, 1].
        factors: ``(B, 3)`` brightness, contrast, saturation factors.
        shift: ``(B,)`` hue shift in turns.
        order: ``(B, 4)`` a permutation of 0..3 per sample (3 = hue).

    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    hue_at = (order == 3).int().argmax(1, keepdim=True)  # (B, 1)
    pos = torch.arange(3, device=x.device).view(1, 3)  # (1, 3)
    before = torch.where(pos < hue_at, order[:, :3], _IDENTITY)  # (B, 3) slots before hue
    after_idx = (hue_at + 1 + pos).clamp(max=3)
    after = torch.where(hue_at + 1 + pos <= 3, order.gather(1, after_idx), _IDENTITY)  # (B, 3) slots after
    for slot in before.unbind(1):
        x = _blend(x, slot, factors)
    x = adjust_hue(x, shift)
    for slot in after.unbind(1):
        x = _blend(x, slot, factors)
    return x


def _blend(x: Tensor, op: Tensor, factors: Tensor) -> Tensor:
    """One brightness (0), contrast (1), saturation (2) or identity (3) blend per sample."""
    gray = grayscale(x)  # (B, 1, H, W)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    op4 = per_sample(op)
    base = torch.where(op4 == 1, mean, torch.where(op4 == 2, gray, torch.zeros_like(mean)))  # (B, 1, H, W)
    f = torch.where(
        op == _IDENTITY, torch.ones_like(factors[:, 0]), factors.gather(1, op.clamp(max=2).unsqueeze(1)).squeeze(1)
    )  # (B,)
    return (base + (x - base) * per_sample(f)).clamp(0, 1)
