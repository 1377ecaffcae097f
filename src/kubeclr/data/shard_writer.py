"""Write splits as WebDataset shards: the format :mod:`kubeclr.data.shards` reads, and any WebDataset tool.

Each split becomes ``<split>-000000.tar``, ``<split>-000001.tar``, … (only splits that have images):
plain POSIX (ustar) tar files, uncompressed, whose members are regular files with mtime 0, uid/gid 0
and mode 0644, written in sorted order, so equal splits give byte-identical shards. A sample is
``<split>/<index:08d>.png`` (the image, PNG: lossless, so decoding gives back the stored pixels; by
default the samples of a split are written in a seeded random order, so that every shard mixes classes) and,
in a labelled split, ``<split>/<index:08d>.cls`` (the class index as ASCII text). ``classes.txt``
names the classes, one a line, when the dataset has labels.

A dataset without labels (``class_names == ()``) has no train or val; its held-out test slice and
its unlabelled images are all written as ``unlabeled-*.tar``: the reader holds a slice out again.

A new shard starts before a sample would take the current one past ``shard_bytes`` (the tar's end
blocks and record padding included); a sample larger than the bound gets a shard of its own.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from kubeclr.data.formats import Splits
from kubeclr.data.shards import CLASSES_FILE, LABEL_EXTENSION, SPLIT_PREFIXES
from kubeclr.errors import DataError, UserError
from kubeclr.progress import progress

log = logging.getLogger(__name__)

IMAGE_EXTENSION = "png"  # one of kubeclr.data.shards.IMAGE_EXTENSIONS, and lossless
DEFAULT_SHARD_BYTES = 256 * 10**6
MIN_SHARD_BYTES = 10**3
SIZE_UNITS = {
    "": 1,
    "b": 1,
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
    **{f"{p}ib": 1024**i for i, p in enumerate("kmgt", 1)},
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", re.IGNORECASE)

# tar's own layout: a 512-byte header per member, data padded to 512; two zero blocks end the
# archive, and tarfile pads the whole file to a 10240-byte record.
_FORMAT, _ENCODING, _ERRORS = tarfile.USTAR_FORMAT, "utf-8", "strict"


def parse_size(text: str, what: str = "shard size") -> int:
    """Bytes of a size like ``256MB``, ``1.5GB``, ``500KB``, ``64MiB`` or ``1000000`` (KB = 1000, KiB = 1024).

    Raises:
        UserError: not a size, or under :data:`MIN_SHARD_BYTES`.
    """
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in SIZE_UNITS:
        raise UserError(f"{what} {text!r}: expected a size like 256MB, 1GB, 500KB, 64MiB or a number of bytes")
    value = int(Decimal(m.group(1)) * SIZE_UNITS[unit])  # Decimal: 1.1GB is exactly 1_100_000_000
    if value < MIN_SHARD_BYTES:
        raise UserError(f"{what} {text!r} is {value} bytes; a shard needs at least 1KB ({MIN_SHARD_BYTES} bytes)")
    return value


def encode_png(image: np.ndarray) -> bytes:
    """One uint8 ``(3, S, S)`` image as PNG bytes (deterministic: no timestamp, fixed compression)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _info(name: str, size: int) -> tarfile.TarInfo:
    """A regular member that says nothing about the machine that wrote it."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, 0, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _member_bytes(info: tarfile.TarInfo) -> int:
    """Bytes one member takes in the tar: its header block(s) and its data padded to whole blocks."""
    blocks = -(-info.size // tarfile.BLOCKSIZE)
    return len(info.tobuf(_FORMAT, _ENCODING, _ERRORS)) + blocks * tarfile.BLOCKSIZE


def closed_size(offset: int) -> int:
    """Size of a tar file whose members end at ``offset``, once closed (end blocks, record padding)."""
    end = offset + 2 * tarfile.BLOCKSIZE
    return -(-end // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _ShardSink:
    """One split's ``<prefix>-NNNNNN.tar`` files, a new one started before a sample would exceed the bound."""

    def __init__(self, dest: Path, prefix: str, shard_bytes: int) -> None:
        self.dest, self.prefix, self.shard_bytes = dest, prefix, shard_bytes
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._in_shard = 0  # samples in the open shard

    def add(self, members: list[tuple[str, bytes]]) -> None:
        infos = [(_info(name, len(data)), data) for name, data in sorted(members)]
        need = sum(_member_bytes(info) for info, _ in infos)
        if self._tar is not None and self._in_shard and closed_size(self._tar.offset + need) > self.shard_bytes:
            self.close()
        if self._tar is None:
            path = self.dest / f"{self.prefix}-{len(self.paths):06d}.tar"
            # the sink holds the shard open across add() calls; close() (in a finally) closes it
            self._tar = tarfile.open(path, "w", format=_FORMAT, encoding=_ENCODING, errors=_ERRORS)  # noqa: SIM115
            self.paths.append(path)
        for info, data in infos:
            self._tar.addfile(info, io.BytesIO(data))
        self._in_shard += 1

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar, self._in_shard = None, 0


def _split_arrays(splits: Splits) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """``(prefix, images, labels or None)`` of every split that has images, in :data:`SPLIT_PREFIXES` order."""
    if splits.class_names:
        parts = {
            name: (getattr(splits, name).images, getattr(splits, name).labels) for name in ("train", "val", "test")
        }
        parts["unlabeled"] = (splits.unlabeled, None)
    else:  # no labels: the held-out slice is unlabelled images too
        parts = {"unlabeled": (np.concatenate([splits.test.images, splits.unlabeled]), None)}
    for prefix in SPLIT_PREFIXES:
        images, labels = parts.get(prefix, (np.zeros(0), None))
        if len(images):
            yield prefix, images, labels


def _check_classes(names: tuple[str, ...]) -> None:
    bad = [n for n in names if not n.strip() or n != n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise DataError(f"class name {bad[0]!r} cannot be a line of {CLASSES_FILE} (blank, padded or multi-line)")
    if len(set(names)) != len(names):
        raise DataError(f"class names repeat; {CLASSES_FILE} needs each once")


def write_shards(
    splits: Splits, dest: Path, *, shard_bytes: int = DEFAULT_SHARD_BYTES, shuffle_seed: int | None = 0
) -> dict:
    """Write ``splits`` into the folder ``dest`` as WebDataset shards (and ``classes.txt``).

    Args:
        splits: what a format's reader returned (:mod:`kubeclr.data.formats`); images uint8 ``(N, 3, S, S)``.
        dest: the folder to write into (created if missing; files of the same names are replaced).
        shard_bytes: the most bytes a shard holds, unless one sample alone is larger.
        shuffle_seed: write each split's samples in this seed's permutation (None: in their order).
            A reader that streams shards mixes only as far as its shuffle buffer reaches: shards of
            one class each would give batches of few classes (WebDataset's advice: shuffle when writing).

    Returns:
        ``{"splits": {prefix: {"samples", "shards", "bytes", "files"}}, "classes": int, "files": [names]}``,
        ``files`` relative to ``dest``, in the order written.

    Raises:
        DataError: class names that cannot be lines of ``classes.txt``.
    """
    _check_classes(splits.class_names)
    dest.mkdir(parents=True, exist_ok=True)
    summary: dict = {"splits": {}, "classes": len(splits.class_names), "files": []}
    for prefix, images, labels in _split_arrays(splits):
        sink = _ShardSink(dest, prefix, shard_bytes)
        order = np.arange(len(images))
        if shuffle_seed is not None:
            order = np.random.default_rng([shuffle_seed, SPLIT_PREFIXES.index(prefix)]).permutation(len(images))
        try:
            for i, j in enumerate(progress(order, total=len(images), desc=f"writing {prefix}", unit="sample")):
                key = f"{prefix}/{i:08d}"
                members = [(f"{key}.{IMAGE_EXTENSION}", encode_png(images[j]))]  # (3, S, S) uint8
                if labels is not None:
                    members.append((f"{key}.{LABEL_EXTENSION}", str(int(labels[j])).encode("ascii")))
                sink.add(members)
        finally:
            sink.close()
        files = [p.name for p in sink.paths]
        size = sum(p.stat().st_size for p in sink.paths)
        summary["splits"][prefix] = {"samples": len(images), "shards": len(files), "bytes": size, "files": files}
        summary["files"] += files
        log.info("%s: %d samples in %d shard(s), %d bytes", prefix, len(images), len(files), size)
    if splits.class_names:
        (dest / CLASSES_FILE).write_text("".join(f"{name}\n" for name in splits.class_names), encoding="utf-8")
        summary["files"].append(CLASSES_FILE)
    return summary
