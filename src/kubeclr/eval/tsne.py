"""Exact t-SNE in torch, for the report's picture of the feature space.

Van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008: Gaussian
conditional affinities whose bandwidths are found by binary search to match a
perplexity (Sec. 2), symmetrised joint P (Sec. 3.1), Student-t affinities Q in
2-D (Sec. 3.3), gradient ``4 sum_j (p_ij - q_ij)(y_i - y_j)(1 + |y_i - y_j|^2)^-1``
(Eq. 5), early exaggeration and momentum gradient descent with adaptive gains
(Sec. 3.4, and the reference implementation). O(N^2) memory and time: meant
for up to a few thousand points.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor


def squared_distances(x: Tensor) -> Tensor:
    """(N, D) → (N, N) squared Euclidean distances, float64, exact zeros on the diagonal."""
    x = x.double()
    sq = (x * x).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    return d2


def conditional_affinities(d2: Tensor, perplexity: float, iterations: int = 64) -> Tensor:
    """Row-stochastic p_{j|i} whose entropies equal ``log(perplexity)``.

    Bisection on log-precision per row, all rows at once (the entropy is monotone
    in the precision beta = 1 / (2 sigma_i^2)).

    Args:
        d2: (N, N) float64 squared distances.
        perplexity: target perplexity, < N.
        iterations: bisection steps (64 reaches double precision).

    Returns:
        (N, N) float64, zero diagonal, rows sum to 1.
    """
    n = d2.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=d2.device)
    scale = d2[off].mean().clamp_min(1e-12)  # makes beta ~ 1; perplexity is scale-free
    d = d2 / scale
    d = d - torch.where(off, d, torch.inf).min(dim=1, keepdim=True).values  # row min 0: no underflow
    target = math.log(perplexity)
    lo = torch.full((n, 1), -30.0, dtype=d.dtype, device=d.device)  # log beta bounds
    hi = torch.full((n, 1), 30.0, dtype=d.dtype, device=d.device)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        p = torch.exp(-d * mid.exp()) * off
        z = p.sum(dim=1, keepdim=True)
        entropy = z.log() + mid.exp() * (d * p).sum(dim=1, keepdim=True) / z
        too_flat = entropy > target  # entropy too high → sharpen (bigger beta)
        lo = torch.where(too_flat, mid, lo)
        hi = torch.where(too_flat, hi, mid)
    p = torch.exp(-d * ((lo + hi) / 2).exp()) * off
    return p / p.sum(dim=1, keepdim=True)


def kl_gradient(p: Tensor, y: Tensor) -> Tensor:
    """Gradient of KL(P || Q) with respect to the embedding (Eq. 5 of the paper).

    Args:
        p: (N, N) symmetric joint affinities, zero diagonal (may be exaggerated).
        y: (N, 2) embedding.

    Returns:
        (N, 2) gradient ``4 sum_j (p_ij - q_ij)(y_i - y_j) / (1 + |y_i - y_j|^2)``.
    """
    sq = (y * y).sum(dim=1)
    num = 1.0 / (1.0 + sq[:, None] + sq[None, :] - 2.0 * y @ y.T)  # (N, N) Student-t kernel
    num = num * (1.0 - torch.eye(y.shape[0], dtype=y.dtype, device=y.device))
    q = (num / num.sum()).clamp_min(1e-12)
    w = (p - q) * num  # (N, N)
    return 4.0 * (w.sum(dim=1, keepdim=True) * y - w @ y)


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    """Temporarily use ``n`` CPU threads.

    The loop is ~1000 steps of small (N, N) ops: for a few hundred points the
    thread-pool hand-off costs more than the arithmetic, and on a busy machine
    it is 10-30x slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tsne(
    x: Tensor,
    *,
    perplexity: float = 30.0,
    iterations: int = 1000,
    seed: int = 0,
    exaggeration: float = 12.0,
    exaggeration_iters: int = 250,
    device: torch.device | None = None,
) -> Tensor:
    """Embed (N, D) points in 2-D with exact t-SNE; deterministic for a given seed.

    Args:
        x: (N, D) features.
        perplexity: effective number of neighbours; clamped to (N - 1) / 3.
        iterations: gradient steps.
        seed: seeds the initial embedding.
        exaggeration: factor on P for the first ``exaggeration_iters`` steps.
        exaggeration_iters: early-exaggeration steps (momentum 0.5, then 0.8).
        device: where to compute (default: ``x``'s device).

    Returns:
        (N, 2) float32 embedding on CPU.
    """
    n = x.shape[0]
    if n < 3:
        return torch.zeros(n, 2)
    device = device or x.device
    if device.type == "cpu" and n <= 1024:
        with _intra_op_threads(1):
            return _tsne(x.to(device), perplexity, iterations, seed, exaggeration, exaggeration_iters)
    return _tsne(x.to(device), perplexity, iterations, seed, exaggeration, exaggeration_iters)


def _tsne(
    x: Tensor, perplexity: float, iterations: int, seed: int, exaggeration: float, exaggeration_iters: int
) -> Tensor:
    n, device = x.shape[0], x.device
    perplexity = max(1.0, min(perplexity, (n - 1) / 3))
    p = conditional_affinities(squared_distances(x), perplexity)
    p = ((p + p.T) / (2 * n)).clamp_min(1e-12).float()  # (N, N) joint, symmetric
    lr = max(n / exaggeration / 4, 50.0)  # the 'auto' rate of Belkina et al. 2019
    gen = torch.Generator().manual_seed(seed)
    y = (torch.randn(n, 2, generator=gen) * 1e-4).to(device)  # (N, 2)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(iterations):
        early = it < exaggeration_iters
        grad = kl_gradient(p * exaggeration if early else p, y)  # (N, 2)
        same_sign = (grad > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
        update = (0.5 if early else 0.8) * update - lr * gains * grad
        y = y + update
        y = y - y.mean(dim=0, keepdim=True)
    return y.float().cpu()


def balanced_indices(labels: Tensor, count: int, seed: int = 0) -> Tensor:
    """Up to ``count`` indices with the classes as equally represented as the labels allow, seeded.

    Unlike :func:`kubeclr.data.split.stratified_indices` (which keeps the class
    proportions), a rare class gets as many points as a common one: a t-SNE plot
    then shows every class.

    Returns:
        (min(count, N),) int64 indices, sorted.
    """
    n = labels.shape[0]
    if count >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    shuffled = labels[order]
    # rank of each element within its class, in shuffled order: round-robin over classes
    rank = torch.zeros(n, dtype=torch.long)
    for c in shuffled.unique():
        members = (shuffled == c).nonzero().flatten()
        rank[members] = torch.arange(members.numel())
    keys = rank * n + torch.arange(n)  # by rank, then shuffled position
    return order[keys.argsort()[:count]].sort().values
