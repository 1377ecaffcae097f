"""Decode many image files in a process pool, into one preallocated uint8 array, with their SHA-256.

Files are handed to the workers in chunks, with a bounded number of chunks in
flight, so memory is the output array plus a few chunks however large the
folder. Each worker reads its files, hashes them (the manifest: file →
SHA-256) and decodes them with :func:`kubeclr.data.images.decode_image`. A
refused file fails the whole ingestion with its reason (``on_bad='fail'``), or
is left out and counted (``'skip'``).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from kubeclr.cpus import usable_cpus
from kubeclr.data.images import BadImage, Limits, decode_image
from kubeclr.errors import DataError
from kubeclr.progress import interactive

log = logging.getLogger(__name__)

CHUNK = 64  # files per task
IN_FLIGHT = 4  # chunks per worker queued at once
INLINE_BELOW = 2 * CHUNK  # fewer files than this are decoded in this process
SHOWN_SKIPS = 10  # skipped files named one by one in the log
DEFAULT_LIMITS = Limits()


@dataclass
class Decoded:
    """The outcome of :func:`decode_files`.

    Attributes:
        images: uint8 ``(K, 3, S, S)``: the files that decoded, in input order.
        kept: bool ``(N,)``: which input files those are.
        sha256: hex digest of every input file (decoded or not), in input order.
        skipped: one message per skipped file.
    """

    images: np.ndarray
    kept: np.ndarray
    sha256: list[str]
    skipped: list[str] = field(default_factory=list)


def _decode_chunk(
    root: str, names: Sequence[str], size: int, limits: Limits
) -> list[tuple[str, np.ndarray | None, str]]:
    """Worker: ``(sha256, image or None, error message)`` for each file."""
    out: list[tuple[str, np.ndarray | None, str]] = []
    for name in names:
        path = os.path.join(root, name)
        try:
            n = os.path.getsize(path)
            if n > limits.max_bytes:
                raise BadImage(f"{name}: {n} bytes, more than data.max_image_bytes={limits.max_bytes}")
            with open(path, "rb") as fh:
                data = fh.read()
            digest = hashlib.sha256(data).hexdigest()
        except BadImage as exc:
            out.append(("", None, str(exc)))
            continue
        except OSError as exc:
            out.append(("", None, f"{name}: cannot be read ({exc.strerror or exc})"))
            continue
        try:
            out.append((digest, decode_image(data, size, name=name, limits=limits), ""))
        except BadImage as exc:
            out.append((digest, None, str(exc)))
    return out


def decode_files(
    root: Path,
    names: Sequence[str],
    size: int,
    *,
    limits: Limits = DEFAULT_LIMITS,
    workers: int = 0,
    on_bad: str = "fail",
    desc: str = "decoding",
) -> Decoded:
    """Decode ``root/<name>`` for every name into ``(K, 3, size, size)`` uint8.

    Args:
        root: the folder the names are relative to.
        names: the files, in the order the output keeps.
        size: side of the square output images.
        limits: what a file may be (:class:`~kubeclr.data.images.Limits`).
        workers: decoding processes (0 = :func:`kubeclr.cpus.usable_cpus`; 1 or few files = this process).
        on_bad: ``'fail'`` (raise on the first refused file) or ``'skip'``.
        desc: label of the progress bar and log lines.

    Raises:
        BadImage: with ``on_bad='fail'``, the first refused file (its name and the reason).
    """
    n = len(names)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    kept = np.zeros(n, dtype=bool)
    sha = [""] * n
    skipped: list[str] = []
    chunks = [range(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    workers = workers or usable_cpus()

    def take(idx: range, results: list[tuple[str, np.ndarray | None, str]]) -> None:
        for i, (digest, image, error) in zip(idx, results):
            sha[i] = digest
            if image is not None:
                images[i], kept[i] = image, True
                continue
            if on_bad == "fail":
                raise BadImage(f"{error} (data.on_bad_image=skip leaves such files out)")
            skipped.append(error)
            if len(skipped) <= SHOWN_SKIPS:
                log.warning("skipping %s", error)

    with tqdm(total=n, desc=desc, unit="img", disable=not interactive(), leave=False, dynamic_ncols=True) as bar:
        step = max(1, n // 10)
        done = 0

        def advance(k: int) -> None:
            nonlocal done
            before, done = done, done + k
            bar.update(k)
            if not interactive() and (done // step > before // step or done == n):
                log.info("%s: %d of %d files", desc, done, n)

        if workers == 1 or n < INLINE_BELOW:
            for idx in chunks:
                take(idx, _decode_chunk(str(root), [names[i] for i in idx], size, limits))
                advance(len(idx))
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                pending: dict[Future, range] = {}
                queue = iter(chunks)
                try:
                    while True:
                        while len(pending) < workers * IN_FLIGHT and (idx := next(queue, None)) is not None:
                            pending[pool.submit(_decode_chunk, str(root), [names[i] for i in idx], size, limits)] = idx
                        if not pending:
                            break
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            idx = pending.pop(fut)
                            take(idx, fut.result())
                            advance(len(idx))
                except BrokenProcessPool:
                    raise DataError(
                        f"{desc}: a decoding worker died (out of memory?); lower data.workers or give the step "
                        "more memory"
                    ) from None
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise
    if skipped:
        log.warning("%s: skipped %d of %d files (data.on_bad_image=skip)", desc, len(skipped), n)
    return Decoded(images=images if kept.all() else images[kept], kept=kept, sha256=sha, skipped=skipped)
