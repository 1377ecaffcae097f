"""Weighted k-nearest-neighbour classification of embeddings.

The monitor used across the instance-discrimination literature (Wu et al.,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018, arXiv:1805.01978, Sec. 3.4): cosine similarity to every train
embedding, the top-k neighbours vote for their class with weight
``exp(sim / tau)``, and the class with the largest summed vote wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_scores(
    train_x: Tensor,
    train_y: Tensor,
    query_x: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int,
    batch_size: int = 1024,
) -> Tensor:
    """Summed neighbour votes per class for every query.

    Args:
        train_x: (N, D) reference embeddings (any float dtype, any device).
        train_y: (N,) int labels in ``range(num_classes)``.
        query_x: (M, D) query embeddings (moved to ``train_x``'s device).
        k: neighbours per query; clamped to N.
        temperature: tau in ``exp(sim / tau)``.
        num_classes: number of classes C.
        batch_size: queries scored at a time (bounds the (B, N) similarity block).

    Returns:
        (M, C) float32 votes on ``train_x``'s device.
    """
    if train_x.shape[0] == 0:
        raise ValueError("knn: the reference set is empty")
    device = train_x.device
    k = min(int(k), train_x.shape[0])
    bank = F.normalize(train_x.float(), dim=1)  # (N, D)
    labels = train_y.to(device=device, dtype=torch.long)  # (N,)
    out = []
    for start in range(0, query_x.shape[0], batch_size):
        q = F.normalize(query_x[start : start + batch_size].to(device).float(), dim=1)  # (B, D)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (B, k) cosine similarities
        weights = (sim / temperature).exp()  # (B, k)
        votes = torch.zeros(q.shape[0], num_classes, device=device)
        votes.scatter_add_(1, labels[idx], weights)  # (B, C)
        out.append(votes)
    if not out:
        return torch.zeros(0, num_classes, device=device)
    return torch.cat(out)


def knn_predict(
    train_x: Tensor, train_y: Tensor, query_x: Tensor, *, k: int = 200, temperature: float = 0.1, num_classes: int
) -> Tensor:
    """Weighted kNN labels (Wu et al. 2018) of ``query_x`` against ``train_x``.

    Args:
        train_x, train_y, query_x, k, temperature, num_classes: as in :func:`knn_scores`.

    Returns:
        (M,) int64 predicted labels, on CPU. Ties go to the lowest class index.
    """
    votes = knn_scores(train_x, train_y, query_x, k=k, temperature=temperature, num_classes=num_classes)
    return votes.argmax(dim=1).cpu()


def knn_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *, k: int, temperature: float, num_classes: int
) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of :func:`knn_predict` on ``test_x``."""
    if test_y.shape[0] == 0:
        return 0.0
    pred = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, num_classes=num_classes)
    return float((pred == test_y.cpu().long()).float().mean())
