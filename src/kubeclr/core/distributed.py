"""Process groups for data-parallel pretraining under ``torchrun``.

``torchrun`` starts one process per device and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env`
reads them (``env://``) and joins the group: NCCL when the process drives a
GPU, gloo on CPU. Outside torchrun every helper degrades to the one-process
case, so the training loop has a single code path.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kubeclr.core.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 writes checkpoints and outputs).
        local_rank: rank on this node, i.e. the GPU index.
        world_size: number of processes.
        device: the device this process trains on.
        backend: ``"nccl"``, ``"gloo"``, or ``""`` when no group was started.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def initialized() -> bool:
    """True when a process group is running."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world_size) of the running group; (0, 1) without one."""
    if not initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """True on rank 0, and in a process without a group."""
    return rank_and_world()[0] == 0


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment variables.

    Without ``WORLD_SIZE``/``RANK`` in the environment this starts nothing and
    returns the one-process context.

    Args:
        device: the configured device (``auto``, ``cpu``, ``cuda``); under
            torchrun a CUDA process uses ``cuda:LOCAL_RANK``.

    Returns:
        The context of this process.

    Raises:
        ConfigError: CUDA requested but missing (from :func:`resolve_device`).
    """
    resolved = resolve_device(device)
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return DistContext(0, 0, 1, resolved, "")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    else:
        backend = "gloo"
    if not initialized():
        kwargs: dict[str, Any] = {"device_id": resolved} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    log.info("rank %d/%d (local %d) on %s via %s", rank, world, local_rank, resolved, backend)
    return DistContext(rank, local_rank, world, resolved, backend)


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if one is running."""
    if initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a copy; the input is unchanged)."""
    out = tensor.detach().clone()
    if initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a group).

    Used for small trusted values between our own processes (RNG states),
    never for data read from storage.
    """
    if not initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: nn.Module, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when more than one rank runs.

    Args:
        model: the module, already on ``device``.
        device: this rank's device.
        sync_bn: convert BatchNorm layers to SyncBatchNorm (CUDA only: the
            gloo backend has no SyncBatchNorm kernels), so statistics are
            computed over the global batch rather than each rank's shard.

    Returns:
        ``model`` itself with one process, else the DDP wrapper (the original
        module stays reachable as ``.module``).
    """
    if rank_and_world()[1] == 1:
        return model
    if sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("model.sync_bn ignored: SyncBatchNorm needs CUDA; BatchNorm stays per rank")
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=ids,
        # The loop runs the same forward (both views, one call) and backward every step and
        # uses every parameter: DDP fixes its buckets after the first step and skips the
        # per-step graph checks. torch.compile over it works (pytorch#103487, tested since #114621).
        static_graph=True,
        # .grad are views into the all-reduce buckets, not a second copy of every gradient
        # (after zero_grad(set_to_none=True) DDP re-points each new grad at its bucket).
        gradient_as_bucket_view=True,
        **_no_buffer_broadcast(),
    )


def _no_buffer_broadcast() -> dict[str, bool]:
    """DDP options that skip broadcasting rank 0's buffers before every forward.

    The only buffers are BatchNorm running statistics. Training-mode BatchNorm
    normalises with the batch's own statistics, so the running ones never touch
    the loss; rank 0 (which alone saves the model) updates its own from its
    shard either way, so what is written is the same, one collective per step
    cheaper. Under SyncBatchNorm every rank's running statistics are already
    equal. Buffers are still synchronised once, when DDP is built. torch 2.13
    renamed the option ``forward_sync_buffers`` (``broadcast_buffers`` warns).
    """
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP or ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            inner = model.module
        else:
            inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None:
            return model
        model = inner
