"""A plain SimCLR, written apart from kubeclr, as the quality benchmark's reference.

Nothing here imports kubeclr: its own ResNet, its own NT-Xent, its own loop,
torchvision's per-image v2 transforms and a stock ``torch.optim.SGD``, so a bug
in our augmentation, loss, optimiser or model cannot hide in both. It follows
the textbook recipe (Chen et al. 2020, arXiv:2002.05709, Algorithm 1):

- views: RandomResizedCrop(32, scale (0.08, 1)), horizontal flip, colour jitter
  (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2, normalise by the train
  split's mean/std; one transform call per image;
- encoder: ResNet-18 (BasicBlock, 2-2-2-2) with the CIFAR stem (3×3/1, no max-pool),
  ``width`` base channels; head Linear(d, d) → BN → ReLU → Linear(d, 128);
- loss: NT-Xent over the 2N views, τ 0.5, cosine similarity;
- SGD momentum 0.9, weight decay on every parameter, one learning-rate step per
  batch, last incomplete batch dropped; schedule ``onecycle`` (torch's
  ``OneCycleLR`` with its defaults: 30% cosine warm-up from lr/25, cosine
  annealing to lr/25e4, momentum cycled 0.95 → 0.85 → 0.95) or ``warmup-cosine``
  (linear warm-up for ``warmup_epochs``, then cosine decay to 0, momentum fixed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

SCHEDULES = ("onecycle", "warmup-cosine")


@dataclass(frozen=True)
class Recipe:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.24  # peak learning rate, no scaling applied
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "onecycle"  # or "warmup-cosine"
    warmup_epochs: float = 3.0  # warmup-cosine only
    temperature: float = 0.5
    width: int = 32
    proj_dim: int = 128
    color_strength: float = 0.5
    seed: int = 0
    decay_all: bool = True  # weight decay on every parameter; False: not on biases and BatchNorm (1-D)
    device: str = "cpu"  # the model's device; the per-image transforms always run on the CPU

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: one of {', '.join(SCHEDULES)}")


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet18(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        chans, layers, cin = (w, 2 * w, 4 * w, 8 * w), [], w
        for i, c in enumerate(chans):
            layers += [Block(cin, c, 1 if i == 0 else 2), Block(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.dim = 8 * w

    def forward(self, x):  # (B, 3, 32, 32) -> (B, 8w)
        return self.layers(self.stem(x)).mean(dim=(2, 3))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """z: (2N, D), rows i and i + N are a positive pair."""
    n = z.shape[0] // 2
    z = F.normalize(z, dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def transform(mean: list[float], std: list[float], s: float) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def train(images: np.ndarray, recipe: Recipe = Recipe(), log=print) -> tuple[nn.Module, list[float]]:
    """Pretrain on uint8 (N, 3, 32, 32) images; returns (encoder, loss per epoch)."""
    torch.manual_seed(recipe.seed)
    x = torch.from_numpy(images)
    pixels = x.float().div(255)
    mean = pixels.mean(dim=(0, 2, 3)).tolist()
    std = pixels.std(dim=(0, 2, 3)).tolist()
    aug = transform(mean, std, recipe.color_strength)
    encoder = ResNet18(recipe.width).to(recipe.device)
    head = nn.Sequential(
        nn.Linear(encoder.dim, encoder.dim),
        nn.BatchNorm1d(encoder.dim),
        nn.ReLU(),
        nn.Linear(encoder.dim, recipe.proj_dim),
    ).to(recipe.device)
    params = list(encoder.parameters()) + list(head.parameters())
    if recipe.decay_all:
        groups = [{"params": params}]
    else:
        groups = [
            {"params": [q for q in params if q.ndim > 1]},
            {"params": [q for q in params if q.ndim <= 1], "weight_decay": 0.0},
        ]
    opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    steps = len(x) // recipe.batch_size
    total, warm = recipe.epochs * steps, round(recipe.warmup_epochs * steps)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total)
    else:  # warmup-cosine; Recipe refuses anything else
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses = []
    for epoch in range(recipe.epochs):
        encoder.train(), head.train()
        t0, running = time.perf_counter(), 0.0
        perm = torch.randperm(len(x))
        for i in range(steps):
            batch = x[perm[i * recipe.batch_size : (i + 1) * recipe.batch_size]]
            views = torch.stack([aug(img) for img in batch] + [aug(img) for img in batch])  # (2N, 3, 32, 32)
            views = views.to(recipe.device, non_blocking=True)
            loss = nt_xent(head(encoder(views)), recipe.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        losses.append(running / steps)
        log(f"plain epoch {epoch + 1}/{recipe.epochs} loss {losses[-1]:.4f} {time.perf_counter() - t0:.1f}s")
    return encoder.eval(), losses


@torch.no_grad()
def embed(encoder: nn.Module, images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Eval-mode features of uint8 (N, 3, H, W) images, normalised with ``mean``/``std``."""
    encoder.eval()
    device = next(encoder.parameters()).device
    x = torch.from_numpy(images).float().div(255)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return torch.cat([encoder(x[i : i + 256].to(device)).cpu() for i in range(0, len(x), 256)]).numpy()
