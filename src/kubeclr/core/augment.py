"""SimCLR data augmentation, batched on tensors on the training device.

The recipe of Chen et al. 2020 (arXiv:2002.05709, App. A and B.9) for CIFAR-10:
random resized crop (area ``crop_scale``, aspect 3/4–4/3) resized to ``size``,
horizontal flip (p = 0.5), colour jitter of strength s — brightness, contrast,
saturation 0.8s and hue 0.2s, in a random order per sample — applied with
p = 0.8, random grayscale (p = 0.2), optional Gaussian blur (off on CIFAR),
then normalisation with the train split's statistics.

Every sample of a batch draws its own parameters from one ``torch.Generator``
living on the images' device, so a whole batch is augmented on the device (no
PIL, no per-image Python loop, no DataLoader workers) and a seeded generator
reproduces it exactly. A batch is two steps: :func:`draw` makes every U[0, 1)
number the batch needs from the generator (a dozen ``torch.rand`` calls), then
:func:`augment_batch`, a pure function with static shapes, turns the images and
those numbers into views; it is what ``SimCLRAugment(compile=True)`` hands to
``torch.compile`` (a ``torch.rand(generator=...)`` inside would break the graph).
Crop and flip are one affine ``grid_sample`` (bilinear, sub-pixel crop boxes).

The colour operations (brightness, contrast, saturation, hue, grayscale) are
exactly torchvision's functional ops (which the tests check against), each with
one factor per sample; :func:`jitter_in_order` applies all four in a per-sample
order with one HSV round trip per batch. The seed article's PIL pipeline, the
benchmarks' baseline, lives in :mod:`kubeclr.bench.article`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kubeclr.config import AugmentConfig

RATIO = (3 / 4, 4 / 3)


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(tuple(shape), generator=generator, device=device)


def _scale(u: Tensor, lo: float, hi: float) -> Tensor:
    """U[0, 1) draws to U[lo, hi)."""
    return lo + (hi - lo) * u


@dataclass(frozen=True)
class CropDraws:
    """Random-resized-crop draws, U[0, 1): ``area`` and ``aspect`` ``(B, 10)`` (one per trial), ``top`` and
    ``left`` ``(B,)``."""

    area: Tensor
    aspect: Tensor
    top: Tensor
    left: Tensor


@dataclass(frozen=True)
class JitterDraws:
    """Colour-jitter draws, U[0, 1): ``apply``, ``brightness``, ``contrast``, ``saturation`` and ``hue``
    ``(B,)``, ``order`` ``(B, 4)`` (its argsort is each sample's order of the four ops)."""

    apply: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor


@dataclass(frozen=True)
class Draws:
    """Every random number one batch of :class:`SimCLRAugment` uses, U[0, 1), ``(B,)`` unless said.

    ``jitter`` is None when the colour distortion is off (strength or p 0), ``blur`` and ``sigma`` when
    the blur is; nothing is drawn for them then.
    """

    crop: CropDraws
    flip: Tensor
    jitter: JitterDraws | None
    gray: Tensor
    blur: Tensor | None
    sigma: Tensor | None


def to_float(images: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]; floating images are returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.float()


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Eval-time transform: to [0, 1] (uint8 is divided by 255), then ``(x - mean) / std`` per channel.

    Args:
        images: ``(B, 3, H, W)`` uint8, or floating in [0, 1].
        mean, std: per-channel statistics in [0, 1] (the stats file).

    Returns:
        ``(B, 3, H, W)`` float32 on the images' device.
    """
    x = to_float(images)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def draw_crop(batch: int, generator: torch.Generator | None, device: torch.device) -> CropDraws:
    """The draws of :func:`sample_crop_boxes`, in its order: area, aspect (10 trials each), top, left."""
    trials = 10
    area = _rand((batch, trials), generator, device)
    aspect = _rand((batch, trials), generator, device)
    return CropDraws(area, aspect, _rand((batch,), generator, device), _rand((batch,), generator, device))


def crop_boxes(
    u: CropDraws, height: int, width: int, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = RATIO
) -> Tensor:
    """The boxes of :func:`sample_crop_boxes` from its draws (deterministic), ``(B, 4)`` ``top, left, h, w``."""
    area = height * width * _scale(u.area, scale[0], scale[1])  # (B, T)
    aspect = torch.exp(_scale(u.aspect, math.log(ratio[0]), math.log(ratio[1])))  # w / h
    w = torch.sqrt(area * aspect)  # (B, T)
    h = torch.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros_like(fits[:, 0], dtype=torch.long))
    pick = first.unsqueeze(1)
    w, h = w.gather(1, pick).squeeze(1), h.gather(1, pick).squeeze(1)  # (B,)
    fallback = ~fits.any(1)
    frac = (area[:, 0] / (height * width)).sqrt()
    w = torch.where(fallback, frac * width, w)
    h = torch.where(fallback, frac * height, h)
    top = (height - h) * u.top
    left = (width - w) * u.left
    return torch.stack([top, left, h, w], dim=1)


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = RATIO,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random-resized-crop boxes, one per sample (Szegedy et al. 2015, as in torchvision).

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); of 10 trials per
    sample the first that fits the image is kept. If none fits, the sample
    keeps its first area fraction with the image's own aspect ratio, so every
    box's area lies within ``scale``. Boxes are continuous (sub-pixel).

    Returns:
        ``(batch, 4)`` float32: ``top, left, h, w`` in pixels.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    return crop_boxes(draw_crop(batch, generator, device), height, width, scale, ratio)


def crop_resize(images: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop each sample's box, optionally mirror it, and resize to ``size`` (bilinear).

    Args:
        images: ``(B, C, H, W)`` float.
        boxes: ``(B, 4)`` ``top, left, h, w`` in pixels.
        size: output side.
        flip: ``(B,)`` bool, mirror horizontally where True.

    Returns:
        ``(B, C, size, size)``.
    """
    b, _, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(1)
    sx, sy = w / width, h / height  # half-extent in normalised coords
    cx, cy = (2 * left + w) / width - 1, (2 * top + h) / height - 1
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(
    images: Tensor,
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = RATIO,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Batched random resized crop with independent boxes per sample.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float.

    Returns:
        ``(B, 3, size, size)`` float32 in [0, 1] (uint8 input is divided by 255;
        float input keeps its range).
    """
    x = to_float(images)
    boxes = sample_crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return crop_resize(x, boxes, size)


# -- colour operations: deterministic, one factor per sample ------------------------------------

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


def draw_jitter(batch: int, generator: torch.Generator | None, device: torch.device) -> JitterDraws:
    """The draws of :func:`color_jitter`, in its order: apply, 3 factors, hue shift, order."""
    apply, brightness, contrast, saturation, hue = (_rand((batch,), generator, device) for _ in range(5))
    return JitterDraws(apply, brightness, contrast, saturation, hue, _rand((batch, 4), generator, device))


def jitter(x: Tensor, u: JitterDraws, strength: float, p: float, *, select: bool = False) -> Tensor:
    """:func:`color_jitter` from its draws (deterministic); ``select`` as there, off by default
    (its ``nonzero`` has a data-dependent shape, which ``torch.compile`` cannot keep static)."""
    j, hue = 0.8 * strength, min(0.2 * strength, 0.5)
    apply = u.apply < p  # (B,)
    factors = torch.stack([_scale(f, max(0.0, 1 - j), 1 + j) for f in (u.brightness, u.contrast, u.saturation)], 1)
    shift = _scale(u.hue, -hue, hue)  # (B,)
    order = u.order.argsort(dim=1)  # (B, 4): op index at each position, 3 = hue
    if select:
        idx = apply.nonzero().squeeze(1)  # (M,) the selected samples
        picked = jitter_in_order(x.index_select(0, idx), factors[idx], shift[idx], order[idx])
        return x.index_copy(0, idx, picked)
    return torch.where(per_sample(apply), jitter_in_order(x, factors, shift, order), x)


def color_jitter(
    x: Tensor, strength: float, p: float, generator: torch.Generator | None = None, *, select: bool | None = None
) -> Tensor:
    """SimCLR colour distortion on ``(B, 3, H, W)`` floats in [0, 1], per-sample parameters and order.

    Brightness, contrast and saturation factors ~ U(max(0, 1 - 0.8s), 1 + 0.8s),
    hue shift ~ U(-0.2s, 0.2s) (capped at ±0.5), applied to each sample with
    probability ``p`` in a random order of its own (torchvision ``ColorJitter``
    semantics). See :func:`jitter_in_order` for how the orders are batched.

    ``select`` (default: on CPU, where a host sync is free) computes only the
    samples drawn for jitter; otherwise every sample is computed and the others
    are restored with one ``where``, which never syncs with the host (CUDA).
    """
    if strength <= 0 or p <= 0:
        return x
    u = draw_jitter(x.shape[0], generator, x.device)
    return jitter(x, u, strength, p, select=x.device.type == "cpu" if select is None else select)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur, kernel ≈ 10% of the side (SimCLR App. A), one sigma per sample."""
    b, c, height, width = x.shape
    k = max(3, int(0.1 * height) // 2 * 2 + 1)
    t = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kern = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))  # (B, k)
    kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k)
    y = x.reshape(1, b * c, height, width)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(-1, 1, 1, k), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(-1, 1, k, 1), groups=b * c)
    return y.view(b, c, height, width)


def draw(batch: int, cfg: AugmentConfig, generator: torch.Generator | None, device: torch.device) -> Draws:
    """Every random number a batch of ``batch`` images needs, drawn from ``generator`` on ``device``.

    The order and shapes of the draws are the augmentation's contract with a saved generator state
    (exact resume): crop (area, aspect, top, left), flip, colour jitter (apply, brightness, contrast,
    saturation, hue, order; only when it is on), grayscale, blur (apply, sigma; only when it is on).
    """
    crop = draw_crop(batch, generator, device)
    flip = _rand((batch,), generator, device)
    colour = cfg.color_strength > 0 and cfg.color_p > 0
    u_jitter = draw_jitter(batch, generator, device) if colour else None
    gray = _rand((batch,), generator, device)
    blur = _rand((batch,), generator, device) if cfg.blur else None
    sigma = _rand((batch,), generator, device) if cfg.blur else None
    return Draws(crop, flip, u_jitter, gray, blur, sigma)


def augment_batch(
    images: Tensor, u: Draws, cfg: AugmentConfig, mean: Tensor, std: Tensor, *, select: bool = False
) -> Tensor:
    """The augmentation of a batch from its draws: no randomness, no data-dependent shapes (unless ``select``).

    Args:
        images: ``(B, 3, H, W)`` uint8 (or float in [0, 1]).
        u: the batch's draws, from :func:`draw` with the same ``cfg``.
        cfg: augmentation section.
        mean, std: ``(3,)`` on the images' device.
        select: jitter only the samples drawn for it (:func:`color_jitter`; eager CPU only).

    Returns:
        ``(B, 3, S, S)`` float32, normalised; ``S`` is ``cfg.size``, or ``H`` when that is 0.
    """
    x = to_float(images)  # (B, 3, H, W) in [0, 1]
    height, width = x.shape[2], x.shape[3]
    boxes = crop_boxes(u.crop, height, width, cfg.crop_scale, RATIO)  # (B, 4)
    flip = u.flip < cfg.flip_p
    x = crop_resize(x, boxes, cfg.size or height, flip).clamp_(0, 1)  # (B, 3, S, S)
    if u.jitter is not None:
        x = jitter(x, u.jitter, cfg.color_strength, cfg.color_p, select=select)
    gray = u.gray < cfg.grayscale_p
    x = torch.where(per_sample(gray), grayscale(x).expand_as(x), x)
    if u.blur is not None and u.sigma is not None:
        blur = u.blur < 0.5
        x = torch.where(per_sample(blur), gaussian_blur(x, _scale(u.sigma, 0.1, 2.0)), x)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


class SimCLRAugment(nn.Module):
    """The SimCLR augmentation as a batched module.

    Args:
        cfg: augmentation section (size, crop_scale, flip_p, color_strength,
            color_p, grayscale_p, blur); ``size`` 0 keeps the input's size.
        mean, std: per-channel statistics in [0, 1] for the final normalisation.
        compile: run :func:`augment_batch` through ``torch.compile`` (static shapes,
            one graph; each new batch shape compiles once) instead of ~280 eager kernels.
            Only the draws stay eager; the views equal the eager ones to float rounding,
            and the generator advances exactly as in eager mode.
    """

    def __init__(self, cfg: AugmentConfig, mean: Sequence[float], std: Sequence[float], compile: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.compiled = compile
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32), persistent=False)
        self._views = torch.compile(augment_batch, dynamic=False, fullgraph=True) if compile else augment_batch

    @torch.no_grad()
    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch.

        Args:
            images: ``(B, 3, H, W)`` uint8 (or float in [0, 1]) on any device.
            generator: source of randomness; must live on the images' device.

        Returns:
            ``(B, 3, S, S)`` float32, normalised, on the images' device; ``S`` is
            ``cfg.size``, or ``H`` when that is 0.
        """
        dev = images.device
        u = draw(images.shape[0], self.cfg, generator, dev)
        select = dev.type == "cpu" and not self.compiled  # see color_jitter
        return self._views(images, u, self.cfg, self.mean.to(dev), self.std.to(dev), select=select)


def paired_views(aug: SimCLRAugment, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Two independent augmentations of every image, drawn as one ``2B`` batch.

    One call of ``aug`` on the batch stacked twice: half the kernel launches of
    two calls, and the result is already the model's input (no ``torch.cat``).

    Args:
        aug: the augmentation module.
        images: ``(B, 3, H, W)`` uint8 (or float in [0, 1]).
        generator: source of randomness on the images' device.

    Returns:
        ``(2B, 3, S, S)``: rows ``i`` and ``B + i`` are the two views of image ``i``.
    """
    return aug(torch.cat([images, images]), generator)
