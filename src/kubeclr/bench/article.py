"""The seed article's data path, kept as the throughput baseline of ``simclr-pipeline bench``.

The article (and most public SimCLR ports) augments each image on the host
with torchvision's PIL transforms inside ``DataLoader`` worker processes,
then copies the two views to the device and trains in fp32. This module
rebuilds exactly that path around the *same* model, loss and optimiser as our
pretraining (:mod:`kubeclr.core.model`, :mod:`kubeclr.core.loss`, :mod:`kubeclr.core.optim`),
so the benchmark compares data paths, not models. It is not used for training.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms as T

from kubeclr.config import AugmentConfig, Config
from kubeclr.core.augment import RATIO
from kubeclr.core.loss import NTXentLoss
from kubeclr.core.model import build_model
from kubeclr.core.optim import build_optimizer, build_scheduler
from kubeclr.core.train import paired_loss


def pil_pipeline(cfg: AugmentConfig, mean: Sequence[float], std: Sequence[float], size: int = 32) -> T.Compose:
    """The seed article's per-image torchvision pipeline (PIL image -> normalised tensor).

    ``size`` is the output size when ``cfg.size`` is 0 (the stored images' size).

    Kept as the baseline for throughput benchmarks and parity checks against
    :class:`~kubeclr.core.augment.SimCLRAugment`.
    """
    s, size = cfg.color_strength, cfg.size or size
    steps: list = [
        T.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), ratio=RATIO),
        T.RandomHorizontalFlip(cfg.flip_p),
    ]
    if s > 0:
        steps.append(T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.2 * s, 0.5))], p=cfg.color_p))
    steps.append(T.RandomGrayscale(cfg.grayscale_p))
    if cfg.blur:
        k = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


def forward_loss(model: nn.Module, loss_fn: nn.Module, view1: Tensor, view2: Tensor) -> Tensor:
    """NT-Xent of one (local) batch of view pairs given as two tensors (the article's loader yields them so).

    Both views go through the model in one call (:func:`~kubeclr.core.train.paired_loss`),
    so BatchNorm sees all 2N views and DDP sees one forward per backward.

    Args:
        model: returns ``(h, z)``; may be DDP-wrapped or compiled.
        loss_fn: :class:`~kubeclr.core.loss.NTXentLoss`.
        view1, view2: ``(N, 3, S, S)`` float views; row i of each is the same image.

    Returns:
        Scalar loss (float32).
    """
    return paired_loss(model, loss_fn, torch.cat([view1, view2]))


class PILPairs(Dataset):
    """Images as PIL, each returned as two independently augmented views (the seed article's dataset).

    Args:
        images: uint8 ``(N, 3, H, W)`` array on the host.
        transform: PIL image -> normalised ``(3, S, S)`` float tensor.
    """

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images = np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))  # (N, H, W, 3) for PIL
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)  # (3, S, S) each


def pil_loader(
    images: np.ndarray,
    cfg: Config,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int,
    batches: int,
    workers: int,
    pin_memory: bool,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader yielding ``batches`` batches of view pairs ``((B,3,S,S), (B,3,S,S))``.

    Samples with replacement, so any number of batches can be drawn from a
    small pool of images without an epoch boundary (and its worker restart)
    inside a timed region.
    """
    dataset = PILPairs(images, pil_pipeline(cfg.augment, mean, std, size=images.shape[-1]))
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=batch_size * batches, generator=torch.Generator().manual_seed(seed)
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )


def pil_augment_images(
    images: np.ndarray, cfg: Config, mean: Sequence[float], std: Sequence[float]
) -> Callable[[], None]:
    """A callable that augments every image of ``images`` twice with the PIL pipeline, in this process."""
    dataset = PILPairs(images, pil_pipeline(cfg.augment, mean, std, size=images.shape[-1]))

    def run() -> None:
        for i in range(len(dataset)):
            dataset[i]

    return run


def article_step(cfg: Config, device: torch.device, *, steps_per_epoch: int) -> Callable[[Tensor, Tensor], None]:
    """A training step in the seed article's style on one batch of host views: copy to the device, fp32 model.

    Same model, NT-Xent and optimiser (with its per-step schedule) as our
    pretraining; no autocast, no channels_last, no compile.
    """
    model = build_model(cfg.model).to(device).train()
    optimizer = build_optimizer(model, cfg.pretrain)
    scheduler = build_scheduler(optimizer, cfg.pretrain, steps_per_epoch=max(1, steps_per_epoch))
    loss_fn = NTXentLoss(cfg.pretrain.temperature)

    def step(view1: Tensor, view2: Tensor) -> None:  # (B, 3, S, S) float32 each, host
        view1 = view1.to(device, non_blocking=True)
        view2 = view2.to(device, non_blocking=True)
        loss = forward_loss(model, loss_fn, view1, view2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step
