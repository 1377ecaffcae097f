"""An epoch of pretraining as batches: how the global batch splits over ranks, and the views of each batch."""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import Tensor

from kubeclr.core.augment import SimCLRAugment, paired_views
from kubeclr.core.device import memory_format
from kubeclr.core.prefetch import Prefetch
from kubeclr.errors import ConfigError


def batch_plan(batch_size: int, world_size: int, n_images: int) -> tuple[int, int]:
    """(per-rank batch, steps per epoch); the last incomplete global batch is dropped.

    Raises:
        ConfigError: the batch does not split evenly over ranks, or exceeds the data.
    """
    if batch_size % world_size:
        raise ConfigError(f"pretrain.batch_size={batch_size} is not divisible by the {world_size} training processes")
    if batch_size > n_images:
        raise ConfigError(f"pretrain.batch_size={batch_size} exceeds the {n_images} training images")
    return batch_size // world_size, n_images // batch_size


def view_batches(
    aug: SimCLRAugment,
    data: Tensor,
    perm: Tensor,
    generator: torch.Generator,
    *,
    batch_size: int,
    per_rank: int,
    rank: int,
    steps: int,
    channels_last: bool,
    background: bool,
) -> contextlib.AbstractContextManager[Iterable[Tensor]]:
    """This rank's ``steps`` batches of paired views for one epoch, as a context manager over an iterable.

    Batch i holds the views ``(2 * per_rank, 3, S, S)`` of
    ``data[perm[i * batch_size + rank * per_rank :][:per_rank]]``. With
    ``background`` (CPU) batch i + 1 is augmented on one thread while batch i
    trains, the overlap a DataLoader's workers give; that thread alone draws
    from ``generator``, in order, so the stream and every checkpoint are
    bitwise those of the inline loop. On CUDA kernels are asynchronous anyway.
    The views are channels_last where ``channels_last`` asks for it and
    :func:`~kubeclr.core.device.memory_format` allows it on ``data``'s device.
    """
    fmt = memory_format(data.device, channels_last)

    def views(i: int) -> Tensor:
        start = i * batch_size + rank * per_rank
        v = paired_views(aug, data[perm[start : start + per_rank]], generator)  # (2b, 3, S, S) float32
        return v.contiguous(memory_format=fmt)

    return Prefetch(views, steps) if background else contextlib.nullcontext(map(views, range(steps)))
