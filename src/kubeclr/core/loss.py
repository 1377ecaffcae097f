"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709), eq. 1 and Algorithm 1::

    l(i, j) = -log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) )
    L = 1/(2N) Σ_k [ l(2k-1, 2k) + l(2k, 2k-1) ]

Under ``torch.distributed`` the embeddings of every rank are gathered with
:func:`gather_with_grad`, so each anchor is contrasted with the negatives of
the *global* batch. The backward pass of the gather all-reduces the gradient
before taking this rank's slice: returning only the local slice (the bug in
several public ports, e.g. lightly PR #1531, Spijkervet/SimCLR #30) drops the
gradient that flows through the other ranks' anchors.

The loss is computed in float32 whatever the caller's autocast: under bf16 the
similarity matmul would be rounded to 8 mantissa bits, an error of ~0.02–0.04
in the logits at τ = 0.1–0.2, as large as the differences between negatives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over ranks, then slices."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # x: (n, D) -> (world*n, D)
        world = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # grad: (world*n, D) -> (n, D)
        # Every rank's loss depends on our slice; sum their gradients first.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks, differentiably.

    Every rank must pass a tensor of the same shape. Outside a multi-process
    group this returns ``x`` unchanged.

    Args:
        x: ``(n, D)`` local tensor.

    Returns:
        ``(world_size * n, D)`` tensor, ranks in order. Its backward all-reduces
        (sums) the incoming gradient over ranks and returns this rank's slice.
    """
    if not _distributed():
        return x
    return _GatherWithGrad.apply(x)


class NTXentLoss(nn.Module):
    """NT-Xent loss over two views (Chen et al. 2020, eq. 1).

    Args:
        temperature: τ, divides the cosine similarities (0.5 for CIFAR-10).
        gather_distributed: contrast against the negatives of all ranks when
            ``torch.distributed`` is initialised with more than one process.

    Under DDP each rank returns the mean over its own 2N anchors. Because the
    gather's backward sums every rank's gradient, each rank's parameter
    gradient is ``world_size`` times its share of the global loss's gradient,
    and DDP's averaging yields exactly the gradient of the single-process loss
    on the concatenated batch; the mean of the ranks' losses equals that loss.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self._cache: tuple[tuple, Tensor, Tensor] | None = None  # (key, self_mask, pos_idx) of the last shape

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Loss of the two views' projections.

        Args:
            z1: ``(N, D)`` projections of the first views.
            z2: ``(N, D)`` projections of the second views; row i is the
                positive of row i of ``z1``.

        Returns:
            Scalar: mean of ``l`` over the 2N local anchors.
        """
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
        with torch.autocast(z1.device.type, enabled=False):  # float32 logits under any autocast
            return self._loss(z1.float(), z2.float())

    def _loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        n = z1.shape[0]
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
        if self.gather_distributed and _distributed():
            rank = dist.get_rank()
            g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # (W*N, D) each
        else:
            rank = 0
            g1, g2 = z1, z2
        keys = torch.cat([g1, g2], dim=0)  # (2WN, D): all views, all ranks
        anchors = torch.cat([z1, z2], dim=0)  # (2N, D): local anchors
        logits = anchors @ keys.T / self.temperature  # (2N, 2WN)
        self_mask, pos_idx = self._targets(n, g1.shape[0], rank, z1.device)
        return F.cross_entropy(logits.masked_fill(self_mask, float("-inf")), pos_idx)

    def _targets(self, n: int, total: int, rank: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(self_mask, pos_idx)`` of the local anchors among ``2 * total`` keys, built once per shape.

        Built from ``arange`` and a comparison on the device: ``F.one_hot`` reads its
        input's min and max back to the host to validate it (two syncs per step).
        """
        key = (n, total, rank, device, torch.is_inference_mode_enabled())  # inference tensors cannot train
        if self._cache is None or self._cache[0] != key:
            local = torch.arange(n, device=device) + rank * n  # global index of local row i in g1
            self_idx = torch.cat([local, local + total])  # (2N,) column of the anchor itself
            pos_idx = torch.cat([local + total, local])  # (2N,) column of its positive
            columns = torch.arange(2 * total, device=device)  # (2WN,)
            self_mask = columns.unsqueeze(0) == self_idx.unsqueeze(1)  # (2N, 2WN): exclude k = i
            self._cache = (key, self_mask, pos_idx)
        return self._cache[1], self._cache[2]
