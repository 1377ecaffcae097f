"""How much memory a dataset needs, how much the step has, and a clear refusal when it will not fit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kubeclr.errors import DataError

log = logging.getLogger(__name__)

GB = 1e9
# cgroup v2, then v1: the container's memory limit ("max" or a huge number = none)
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def available_bytes(limit_gb: float = 0.0) -> tuple[int, str]:
    """``(bytes, where that number comes from)``: ``data.memory_limit_gb``, the container's limit, or the RAM."""
    if limit_gb:
        return int(limit_gb * GB), "data.memory_limit_gb"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < ram:
            return int(text), "the container's memory limit"
    return ram, "the machine's memory"


def image_bytes(count: int, size: int) -> int:
    """Bytes of ``count`` uint8 RGB images of ``size`` × ``size``."""
    return count * 3 * size * size


def check_fits(what: str, count: int, size: int, *, factor: float, limit_gb: float = 0.0, headroom: int = 0) -> None:
    """Log what ``count`` images of ``size`` px take, and refuse them if ``factor`` copies would not fit.

    Args:
        what: names the images in messages ("STL-10: 113,000 images").
        count, size: how many images, and their side.
        factor: copies the step holds at its peak (e.g. 2: the decoded set and a split of it).
        limit_gb: ``data.memory_limit_gb`` (0 = the container's limit).
        headroom: bytes needed besides the images (decoding workers' working memory).

    Raises:
        DataError: the step would need more than is available.
    """
    data = image_bytes(count, size)
    need = int(data * factor) + headroom
    have, source = available_bytes(limit_gb)
    log.info(
        "%s: %d images at %d px = %.2f GB uint8; this step needs about %.2f GB (%s: %.1f GB)",
        what,
        count,
        size,
        data / GB,
        need / GB,
        source,
        have / GB,
    )
    if need > have:
        raise DataError(
            f"{what}: {count:,} images at {size} px are {data / GB:.2f} GB as uint8 and this step needs about "
            f"{need / GB:.1f} GB, more than the {have / GB:.1f} GB of {source}; lower data.image_size or "
            "data.unlabeled_limit / data.train_limit, or give the step more memory"
        )
