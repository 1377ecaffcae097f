"""Weighted k-nearest-neighbour classification of embeddings, and the kNN monitor of pretraining.

The monitor used across the instance-discrimination literature (Wu et al.,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018, arXiv:1805.01978, Sec. 3.4): cosine similarity to every train
embedding, the top-k neighbours vote for their class with weight
``exp(sim / tau)``, and the class with the largest summed vote wins.
:func:`knn_monitor` scores the encoder that way during pretraining, on a
held-out slice of the train split.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kubeclr.config import EvalConfig
from kubeclr.eval.features import extract_features
from kubeclr.eval.representation import rankme

KNN_QUERY = 1000  # held-out query images of the kNN monitor
KNN_BANK = 10000  # at most this many labelled bank images


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


def knn_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bank and query indices for the kNN monitor among ``n`` labelled train images.

    Pretraining never reads labels, so a held-out slice of its own images
    (``KNN_QUERY`` queries against up to ``KNN_BANK`` others) measures
    representation quality without touching val/test.

    Returns:
        ``(bank, query)`` index arrays, disjoint, drawn from ``seed``.
    """
    order = np.random.default_rng(seed).permutation(n)
    n_query = min(KNN_QUERY, n // 5)
    return order[n_query : n_query + KNN_BANK], order[:n_query]


def knn_monitor(
    cfg: EvalConfig,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    seed: int,
    device: torch.device,
) -> tuple[Callable[[nn.Module], dict[str, float]], dict]:
    """The per-epoch kNN monitor (Wu et al. 2018) with the run's ``eval`` settings, and what it uses.

    Args:
        cfg: the eval section (``knn_k``, ``knn_temperature``, ``batch_size``).
        images: uint8 ``(N, 3, H, W)`` labelled train images.
        labels: ``(N,)`` their labels in ``range(num_classes)``.
        num_classes: number of classes.
        mean, std: the normalisation statistics.
        seed: draws the bank and the queries (:func:`knn_split`; ``data.seed``).
        device: where the encoder runs.

    Returns:
        ``(monitor, facts)``: ``monitor(encoder)`` is ``{"knn_top1", "rankme", "rankme_max"}``: the
        weighted kNN top-1 of the held-out queries, the effective rank of their features (RankMe,
        :mod:`kubeclr.eval.representation`: collapse shows as it happens) and the most it can be,
        ``min(queries, feature dimension)``; ``facts`` is
        ``{"k", "temperature", "bank", "queries"}``.
    """
    bank, query = knn_split(len(labels), seed)
    bank_x, query_x = images[bank], images[query]
    bank_y, query_y = torch.as_tensor(labels[bank]), torch.as_tensor(labels[query])
    k = min(cfg.knn_k, len(bank_y))

    def monitor(encoder: nn.Module) -> dict[str, float]:
        feats = [
            extract_features(encoder, x, mean, std, device=device, batch_size=cfg.batch_size) for x in (bank_x, query_x)
        ]
        top1 = knn_accuracy(
            feats[0], bank_y, feats[1], query_y, k=k, temperature=cfg.knn_temperature, num_classes=num_classes
        )
        return {"knn_top1": top1, "rankme": rankme(feats[1]), "rankme_max": float(min(feats[1].shape))}

    return monitor, {"k": k, "temperature": cfg.knn_temperature, "bank": len(bank_y), "queries": len(query_y)}
