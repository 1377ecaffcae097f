"""Counting the places where PyTorch reads a tensor's value back to Python (a host sync on CUDA)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# the ATen ops behind .item(), float(t), int(t), bool(t) and `if t:`
HOST_READS = {"_local_scalar_dense", "is_nonzero", "item"}


class HostReads(TorchDispatchMode):
    """Counts host reads of tensor values dispatched on this thread while active.

    Dispatch modes are thread-local: ops run by other threads (the CPU
    prefetch thread of :class:`kubeclr.core.train.Prefetch`) are not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READS:
            self.count += 1
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def host_reads(fn) -> int:
    """Host reads made by ``fn()`` on this thread."""
    with HostReads() as mode:
        fn()
    return mode.count


def check_counter() -> None:
    """The counter sees a plain ``.item()`` (so a zero count means something)."""
    assert host_reads(lambda: torch.ones(2).sum().item()) == 1
