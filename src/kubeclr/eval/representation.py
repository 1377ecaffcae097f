"""Label-free measures of a representation: effective rank, alignment, uniformity.

They need no labels, so every run reports them, and a run on unlabelled images has
nothing else. All three are computed on the frozen encoder's features ``h`` (the
representation that is exported and evaluated); alignment and uniformity also on the
projection head's output ``z`` at the end of pretraining (:func:`measure_head`), where
Wang & Isola measure SimCLR.

- **RankMe** (Garrido et al., ICML 2023, arXiv:2210.02885): ``exp(-Σ p_k log p_k)`` with
  ``p = σ / Σσ + ε`` over the singular values σ of the ``(N, D)`` feature matrix: the
  effective rank, between 1 (every image maps to one direction: collapse) and
  ``min(N, D)``. Higher tracks better downstream accuracy within one method.
- **Alignment** (Wang & Isola, ICML 2020, arXiv:2005.10242): ``E ||f(x) - f(x⁺)||²`` over
  two augmented views of the same image, features L2-normalised: 0 = the views map to
  one point; 4 = opposite points. Lower is better.
- **Uniformity** (same paper): ``log E exp(-t ||f(x) - f(y)||²)`` over pairs of distinct
  images, ``t = 2``, features L2-normalised: how evenly the features cover the sphere,
  from 0 (all equal) down to about ``-4`` (spread out). Lower is better.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kubeclr.config import AugmentConfig, EvalConfig
from kubeclr.core.augment import SimCLRAugment, paired_views
from kubeclr.eval.features import extract_features

RANKME_EPS = 1e-7  # the paper's ε, added to the normalised singular values
UNIFORMITY_T = 2.0
MONITOR_IMAGES = 1024  # the label-free monitor's sample of the pretraining images
MAX_IMAGES = 2048  # the measures' sample: enough for a stable rank below D = 2048, a few seconds on a CPU


def rankme(features: Tensor) -> float:
    """Effective rank of an ``(N, D)`` feature matrix (RankMe); 1.0 for N = 0 or all-zero features."""
    x = torch.as_tensor(features, dtype=torch.float64)
    if x.shape[0] == 0:
        return 1.0
    s = torch.linalg.svdvals(x)
    if float(s.sum()) == 0.0:
        return 1.0
    p = s / s.sum() + RANKME_EPS
    return float(torch.exp(-(p * torch.log(p)).sum()))


def alignment(z1: Tensor, z2: Tensor) -> float:
    """Mean squared distance between the L2-normalised features of paired views (rows match)."""
    a, b = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((a - b).pow(2).sum(dim=1).mean())


def uniformity(z: Tensor, t: float = UNIFORMITY_T) -> float:
    """``log`` of the mean Gaussian potential ``exp(-t d²)`` over the pairs of distinct rows, L2-normalised."""
    x = F.normalize(z.double(), dim=1)
    if x.shape[0] < 2:
        raise ValueError("uniformity needs at least two feature vectors")
    sq = torch.pdist(x).pow(2)  # the N(N-1)/2 pairs i < j
    return float(torch.logsumexp(-t * sq, dim=0) - np.log(sq.numel()))


def sample_indices(n: int, seed: int, limit: int = MAX_IMAGES) -> np.ndarray:
    """A seeded, sorted sample of at most ``limit`` of ``n`` indices (all of them when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def measure(
    encoder: nn.Module,
    images: np.ndarray,
    features: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig,
    *,
    device: torch.device,
    seed: int,
    batch_size: int = 512,
) -> dict:
    """The label-free measures of ``encoder`` on held-out ``images`` (uint8 ``(N, 3, H, W)``).

    RankMe and uniformity use ``features``, the encoder's features of ``images`` as stored
    (the evaluation's, computed once); alignment encodes two augmented views of each image
    (the run's own augmentation, drawn from ``seed``). At most :data:`MAX_IMAGES` images,
    a seeded sample, are used.

    Returns:
        ``{"rankme", "alignment", "uniformity", "n_images", "feature_dim"}``.

    Raises:
        ValueError: fewer than two images.
    """
    if len(images) != len(features):
        raise ValueError(f"measure: {len(images)} images but {len(features)} feature vectors")
    if len(images) < 2:
        raise ValueError(f"the label-free measures need at least 2 held-out images, got {len(images)}")
    idx = sample_indices(len(images), seed)
    picked, feats = torch.as_tensor(images[idx]), torch.as_tensor(features)[torch.as_tensor(idx)]
    z1, z2 = _paired_features(encoder, picked, mean, std, augment, device=device, seed=seed, batch_size=batch_size)
    return {
        "rankme": rankme(feats),
        "alignment": alignment(z1, z2),
        "uniformity": uniformity(feats),
        "n_images": int(picked.shape[0]),
        "feature_dim": int(feats.shape[1]),
    }


def rankme_monitor(
    cfg: EvalConfig,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    seed: int,
    device: torch.device,
) -> tuple[Callable[[nn.Module], dict[str, float]], dict]:
    """The per-epoch monitor of a run without labels: RankMe of a fixed, seeded sample of its images.

    The label-free counterpart of :func:`kubeclr.eval.knn.knn_monitor` (same contract): no kNN
    accuracy without labels, but collapse still shows as it happens.

    Returns:
        ``(monitor, facts)``: ``monitor(encoder)`` is ``{"rankme", "rankme_max"}`` (the most it can be,
        ``min(images, feature dimension)``); ``facts`` is ``{"images"}``.
    """
    sample = images[sample_indices(len(images), seed, MONITOR_IMAGES)]

    def monitor(encoder: nn.Module) -> dict[str, float]:
        feats = extract_features(encoder, sample, mean, std, device=device, batch_size=cfg.batch_size)
        return {"rankme": rankme(feats), "rankme_max": float(min(feats.shape))}

    return monitor, {"images": int(len(sample))}


class _Projection(nn.Module):
    """The projection head's output ``z`` of a SimCLR model (``model(x)`` is ``(h, z)``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[1]


def measure_head(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig,
    *,
    device: torch.device,
    seed: int,
    batch_size: int = 512,
) -> dict:
    """Alignment and uniformity where Wang & Isola define them for SimCLR: on the head's output ``z``.

    ``model(x)`` returns ``(h, z)``; the loss compares L2-normalised ``z``. A seeded sample of at
    most :data:`MONITOR_IMAGES` of ``images`` (uint8 ``(N, 3, H, W)``): uniformity on the images as
    stored, alignment on two augmented views of each.

    Returns:
        ``{"alignment", "uniformity", "n_images", "dim"}``.
    """
    picked = torch.as_tensor(images[sample_indices(len(images), seed, MONITOR_IMAGES)])
    if picked.shape[0] < 2:
        raise ValueError(f"the head's measures need at least 2 images, got {picked.shape[0]}")
    head = _Projection(model)
    z = extract_features(head, picked, mean, std, device=device, batch_size=batch_size)  # the images as stored
    z1, z2 = _paired_features(head, picked, mean, std, augment, device=device, seed=seed, batch_size=batch_size)
    return {
        "alignment": alignment(z1, z2),
        "uniformity": uniformity(z),
        "n_images": int(picked.shape[0]),
        "dim": int(z.shape[1]),
    }


def _paired_features(
    net: nn.Module,
    picked: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig,
    *,
    device: torch.device,
    seed: int,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """``net``'s outputs on two augmented views of each image (the run's augmentation, drawn from ``seed``)."""
    aug = SimCLRAugment(augment, mean, std).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    z1, z2 = [], []
    for start in range(0, picked.shape[0], batch_size):
        chunk = picked[start : start + batch_size].to(device)
        views = paired_views(aug, chunk, generator)  # (2B, 3, S, S) float, normalised
        encoded = _encode_views(net, views, device=device, batch_size=batch_size)
        z1.append(encoded[: chunk.shape[0]])
        z2.append(encoded[chunk.shape[0] :])
    return torch.cat(z1), torch.cat(z2)


def _encode_views(encoder: nn.Module, views: Tensor, *, device: torch.device, batch_size: int) -> Tensor:
    """Encoder features of already-normalised float views, frozen, in eval mode (as :func:`extract_features`)."""
    was_training = encoder.training
    encoder.to(device).eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return torch.cat(
                [encoder(views[i : i + batch_size]).float().cpu() for i in range(0, views.shape[0], batch_size)]
            )
    finally:
        encoder.train(was_training)
