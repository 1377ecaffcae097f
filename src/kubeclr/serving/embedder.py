"""The exported models as torch modules: uint8 images in, features (or class probabilities) out.

:class:`Embedder` is what ``encoder.onnx`` and ``encoder.ts`` compute: ``(B, 3, H, W)`` uint8 →
``/ 255`` → ``(x - mean) / std`` with the train split's statistics → the encoder → ``(B, D)``
float32, exactly :func:`kubeclr.eval.features.extract_features` on a CPU.
:class:`Classifier` is the linear probe on those features (``classifier.onnx``): standardise
with the probe's feature statistics, the linear layer, softmax.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn


class Embedder(nn.Module):
    """``(B, 3, H, W)`` uint8 → ``(B, D)`` float32 features, normalisation inside."""

    def __init__(self, encoder: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(torch.float32) / 255.0
        return self.encoder((x - self.mean) / self.std)


class Classifier(nn.Module):
    """``(B, D)`` features → ``(B, C)`` class probabilities (the linear probe of linear_eval)."""

    def __init__(self, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        weight = torch.as_tensor(state["weight"], dtype=torch.float32)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.linear.weight.data.copy_(weight)
        self.linear.bias.data.copy_(torch.as_tensor(state["bias"], dtype=torch.float32))
        self.register_buffer("mean", torch.as_tensor(state["mean"], dtype=torch.float32).view(1, -1))
        self.register_buffer("std", torch.as_tensor(state["std"], dtype=torch.float32).view(1, -1))

    def forward(self, features: Tensor) -> Tensor:
        return torch.softmax(self.linear((features - self.mean) / self.std), dim=1)
