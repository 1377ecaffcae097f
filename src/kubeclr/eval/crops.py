"""The 'crops' linear evaluation (the seed article's): a linear layer trained by SGD on crops.

A linear layer is trained with SGD on top of the frozen encoder, on
random-resized crops of the train images, for ``cfg.crops_epochs`` epochs;
``cfg.finetune`` unfreezes the encoder (fine-tuning instead of linear
evaluation). After a frozen run, MoCo's ``sanity_check`` (He et al. 2020,
arXiv:1911.05722, ``main_lincls.py``) compares every encoder tensor with its
value before training: a linear evaluation that changed the encoder is a bug,
so it raises instead of reporting a number.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kubeclr.config import EvalConfig
from kubeclr.core.augment import RATIO, normalize, random_resized_crop
from kubeclr.core.device import memory_format
from kubeclr.eval.features import extract_features
from kubeclr.eval.linear import LinearResult, classification_results
from kubeclr.progress import progress

log = logging.getLogger(__name__)


class EncoderChangedError(RuntimeError):
    """A frozen-encoder evaluation modified the encoder (a bug, not a user error)."""


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter and buffer of ``module``."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def sanity_check(module: nn.Module, before: Mapping[str, Tensor]) -> None:
    """Raise :class:`EncoderChangedError` unless ``module`` equals ``before`` exactly.

    Raises:
        EncoderChangedError: naming the first tensor that changed (or appeared/vanished).
    """
    now = module.state_dict()
    if set(now) != set(before):
        raise EncoderChangedError(f"encoder tensors changed: {sorted(set(now) ^ set(before))[:3]}")
    for key, value in now.items():
        if not torch.equal(value.detach().to(before[key].device), before[key]):
            raise EncoderChangedError(f"frozen encoder was modified during linear evaluation: '{key}' changed")


def _train_one_epoch(
    encoder: nn.Module,
    head: nn.Linear,
    images: Tensor,
    labels: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    crop_size: int,
    crop_scale: tuple[float, float],
    batch_size: int,
    finetune: bool,
    shuffle: torch.Generator,
    crops: torch.Generator,
    device: torch.device,
    fmt: torch.memory_format,
) -> float:
    """One pass over shuffled train images; returns the mean cross-entropy.

    ``shuffle`` is a CPU generator for the order, ``crops`` lives on ``device``;
    crops enter the encoder in memory format ``fmt`` (as in feature extraction).
    """
    n = images.shape[0]
    order = torch.randperm(n, generator=shuffle)
    total, steps = 0.0, 0
    for start in progress(range(0, n, batch_size), desc="crops linear eval", unit="batch"):
        idx = order[start : start + batch_size]
        x = normalize(images[idx].to(device), mean, std)  # (B, 3, H, W)
        x = random_resized_crop(x, crop_size, crop_scale, RATIO, crops)  # (B, 3, S, S)
        x = x.contiguous(memory_format=fmt)
        with torch.set_grad_enabled(finetune):
            h = encoder(x)  # (B, D)
        loss = F.cross_entropy(head(h), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1)


def linear_eval_crops(
    encoder: nn.Module,
    images: Mapping[str, Tensor],
    labels: Mapping[str, Tensor],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    cfg: EvalConfig,
    *,
    crop_size: int,
    crop_scale: tuple[float, float],
    device: torch.device,
    seed: int = 0,
) -> LinearResult:
    """Train a linear layer on (frozen, unless ``cfg.finetune``) encoder outputs.

    SGD (momentum 0.9, lr ``cfg.crops_lr``, cosine decay per step) for
    ``cfg.crops_epochs`` epochs over random-resized crops; evaluation on the
    centre (uncropped) val and test images.

    Args:
        encoder: backbone (B, 3, H, W) → (B, D) with attribute ``feature_dim``.
        images: ``{"train", "val", "test"}`` → uint8 (N, 3, 32, 32).
        labels: same keys → int64 (N,).
        class_names: label names.
        mean, std: normalisation statistics of the train split.
        cfg: eval config (``crops_epochs``, ``crops_lr``, ``finetune``, ``batch_size``).
        crop_size, crop_scale: output size and area range of the random resized crop.
        device: where training runs.
        seed: seeds the crops and the shuffling.

    Returns:
        A :class:`LinearResult` with ``protocol='crops'`` and ``l2=None``; the classifier's
        ``mean``/``std`` are zeros/ones (it consumes encoder outputs directly).

    Raises:
        EncoderChangedError: a frozen run modified the encoder.
    """
    start = time.perf_counter()
    encoder.to(device)
    frozen = not cfg.finetune
    before = snapshot(encoder) if frozen else None
    requires = {name: p.requires_grad for name, p in encoder.named_parameters()}
    for p in encoder.parameters():
        p.requires_grad_(not frozen)
    encoder.train(not frozen)  # frozen: eval mode so BatchNorm statistics stay fixed
    dim = int(encoder.feature_dim)
    torch.manual_seed(seed)
    head = nn.Linear(dim, len(class_names)).to(device)
    params = list(head.parameters()) + ([] if frozen else list(encoder.parameters()))
    optimizer = torch.optim.SGD(params, lr=cfg.crops_lr, momentum=0.9)
    steps = cfg.crops_epochs * math.ceil(images["train"].shape[0] / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    shuffle = torch.Generator().manual_seed(seed)
    crops = torch.Generator(device=device).manual_seed(seed)
    fmt = memory_format(device)
    train_images, train_labels = torch.as_tensor(images["train"]), torch.as_tensor(labels["train"])
    try:
        for epoch in range(cfg.crops_epochs):
            loss = _train_one_epoch(
                encoder,
                head,
                train_images,
                train_labels,
                optimizer,
                scheduler,
                mean=mean,
                std=std,
                crop_size=crop_size,
                crop_scale=crop_scale,
                batch_size=cfg.batch_size,
                finetune=not frozen,
                shuffle=shuffle,
                crops=crops,
                device=device,
                fmt=fmt,
            )
            log.info("crops linear eval: epoch %d/%d loss %.4f", epoch + 1, cfg.crops_epochs, loss)
    finally:
        for name, p in encoder.named_parameters():
            p.requires_grad_(requires[name])
    if before is not None:
        sanity_check(encoder, before)
    logits = {}
    with torch.no_grad():
        for split in ("val", "test"):
            feats = extract_features(encoder, images[split], mean, std, device=device, batch_size=cfg.batch_size)
            logits[split] = head(feats.to(device)).cpu()  # (N, C)
    results = classification_results(
        logits["val"], torch.as_tensor(labels["val"]), logits["test"], torch.as_tensor(labels["test"]), class_names
    )
    results = {"protocol": "crops", **results, "l2": None, "seconds": time.perf_counter() - start}
    classifier = {
        "weight": head.weight.detach().cpu(),
        "bias": head.bias.detach().cpu(),
        "mean": torch.zeros(dim),
        "std": torch.ones(dim),
    }
    return LinearResult(results=results, classifier=classifier)
