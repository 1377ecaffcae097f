"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709), eq. 1 and Algorithm 1::

    l(i, j) = -log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) )
    L = 1/(2N) Σ_k [ l(2k-1, 2k) + l(2k, 2k-1) ]

Under ``torch.distributed`` both views' embeddings of every rank are gathered
in one collective by :func:`gather_with_grad`, so each anchor is contrasted
with the negatives of the *global* batch. The backward pass of the gather sums
the gradient over ranks before keeping this rank's rows (a reduce-scatter):
returning only the local slice (the bug in several public ports, e.g. lightly
PR #1531, Spijkervet/SimCLR #30) drops the gradient that flows through the
other ranks' anchors.

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
    """all_gather_into_tensor whose backward is a reduce-scatter (sum over ranks, keep this rank's rows).

    Both are single-tensor collectives: NCCL runs them natively; gloo has had them
    since torch 2.2 (pytorch#112144), its reduce-scatter being an all-reduce of the
    whole gradient followed by this rank's chunk (pytorch#118911), i.e. the same
    maths with twice the traffic. Those are the only backends
    :func:`kubeclr.core.distributed.init_from_env` starts and ``torch>=2.4`` is
    required, so no list-gather fallback is needed.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # x: (n, D) -> (world*n, D), rank r's rows at [r*n, (r+1)*n)
        world = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        _all_gather_into(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # grad: (world*n, D) -> (n, D)
        # Every rank's loss depends on our rows: sum their gradients, keep ours.
        out = grad.new_empty((ctx.n, *grad.shape[1:]))
        _reduce_scatter_into(out, grad.contiguous())
        return out


# torch 2.14 renamed the single-tensor collectives (the old names warn); same signature and semantics.
_all_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_into = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks, differentiably.

    Every rank must pass a tensor of the same shape. Outside a multi-process
    group this returns ``x`` unchanged.

    Args:
        x: ``(n, D)`` local tensor.

    Returns:
        ``(world_size * n, D)`` tensor, ranks in order. Its backward sums the
        incoming gradient over ranks and returns this rank's rows.
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
        anchors = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D): local anchors, view 1 then view 2
        if self.gather_distributed and _distributed():
            rank = dist.get_rank()
            keys = gather_with_grad(anchors)  # (W*2N, D): [r0 view1, r0 view2, r1 view1, …], one collective
        else:
            rank, keys = 0, anchors
        logits = anchors @ keys.T / self.temperature  # (2N, W*2N)
        self_mask, pos_idx = self._targets(n, keys.shape[0], rank, z1.device)
        return F.cross_entropy(logits.masked_fill(self_mask, float("-inf")), pos_idx)

    def _targets(self, n: int, total: int, rank: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(self_mask, pos_idx)`` of the local anchors among ``total`` keys, built once per shape.

        Keys are rank-major (rank r's 2N anchors at ``[2Nr, 2N(r+1))``), so with one
        rank they are the local anchors themselves. The key order only changes the
        order of the softmax sum, so the loss equals the one-process loss on the
        concatenated batch up to float rounding.

        Built from ``arange`` and a comparison on the device: ``F.one_hot`` reads its
        input's min and max back to the host to validate it (two syncs per step).
        """
        key = (n, total, rank, device, torch.is_inference_mode_enabled())  # inference tensors cannot train
        if self._cache is None or self._cache[0] != key:
            self_idx = torch.arange(2 * n, device=device) + rank * 2 * n  # (2N,) column of the anchor itself
            pos_idx = self_idx.roll(n)  # (2N,) column of its positive: view 1 row i <-> view 2 row i
            columns = torch.arange(total, device=device)  # (W*2N,)
            self_mask = columns.unsqueeze(0) == self_idx.unsqueeze(1)  # (2N, W*2N): exclude k = i
            self._cache = (key, self_mask, pos_idx)
        return self._cache[1], self._cache[2]
