"""Progress reporting: a bar when a person watches, a log line otherwise."""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def interactive() -> bool:
    """True when stderr is a terminal (and KUBECLR_PROGRESS is not 0)."""
    flag = os.environ.get("KUBECLR_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when interactive; plain iteration otherwise."""
    if not interactive():
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False, dynamic_ncols=True)


def byte_bar(total: int | None, desc: str) -> tqdm:
    """A byte-counting bar for downloads (disabled when not interactive)."""
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not interactive(),
        leave=False,
        dynamic_ncols=True,
    )


def setup_logging(level: int = logging.INFO) -> None:
    """One format for the CLI and for steps running inside KFP pods."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True
    )
