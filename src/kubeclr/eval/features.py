"""Frozen-encoder feature extraction for linear and kNN evaluation.

The encoder is the backbone without the projection head: SimCLR (Chen et al.
2020, arXiv:2002.05709, Sec. 4.2) shows the representation *before* the head,
h, is the one that transfers, and linear evaluation is defined on it.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kubeclr.core.augment import normalize
from kubeclr.core.device import memory_format
from kubeclr.progress import progress

log = logging.getLogger(__name__)


def extract_features(
    encoder: nn.Module,
    images: Tensor | np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    batch_size: int = 512,
) -> Tensor:
    """Encode images with a frozen encoder, in eval mode, without gradients.

    The encoder is moved to ``device``; its train/eval mode is restored on exit.
    Autocast (bf16) is used on CUDA only, so CPU results are fp32 and the
    output is deterministic for a given encoder and input. Inputs are
    channels_last where :func:`~kubeclr.core.device.memory_format` allows it (CUDA).

    Args:
        encoder: maps (B, 3, H, W) float to (B, D).
        images: uint8 (N, 3, H, W), tensor or array, on any device.
        mean, std: per-channel normalisation statistics in [0, 1] (train split).
        device: where the encoder runs.
        batch_size: images per forward pass.

    Returns:
        float32 (N, D) features on CPU.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"extract_features: expected uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    was_training = encoder.training
    encoder.to(device).eval()
    fmt = memory_format(device)
    chunks = []
    starts = range(0, images.shape[0], batch_size)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for start in progress(starts, total=len(starts), desc="features", unit="batch"):
                batch = images[start : start + batch_size].to(device, non_blocking=True)
                x = normalize(batch, mean, std).contiguous(memory_format=fmt)  # (B, 3, H, W)
                chunks.append(encoder(x).float().cpu())  # (B, D)
    finally:
        encoder.train(was_training)
    if not chunks:
        dim = int(getattr(encoder, "feature_dim", 0))
        return torch.zeros(0, dim)
    return torch.cat(chunks)
