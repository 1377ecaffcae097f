"""WebDataset shards: the format, and reading them into the same splits as every other format.

A dataset in shards is a folder (or ``s3://`` prefix) of POSIX tar files::

    train-000000.tar …     labelled training samples
    test-000000.tar …      labelled test samples
    val-000000.tar …       optional; without them val is a stratified data.val_fraction of train
    unlabeled-000000.tar … optional; pretraining only
    classes.txt            optional; one class name per line, index = line (else the names are the indices)

A *sample* is the members of one tar that share a key: the member name up to the first
dot of its base name (``train/000123.png`` and ``train/000123.cls`` are sample
``train/000123``), WebDataset's convention. It holds exactly one image (``jpg``, ``jpeg``,
``png``, ``webp``) and, outside ``unlabeled-*``, a ``cls`` member: the class index as text.
Shards without train and test but with ``unlabeled-*`` are a dataset without labels.

Members are read as streams (``tarfile`` in stream mode), never extracted; a member that is
not a regular file, a sample with no image or two, a bad ``cls``, an image over the byte or
pixel bounds are refused by shard and key (or, with ``data.on_bad_image=skip``, skipped and
reported). Images decode exactly as an image folder's do (:func:`kubeclr.data.images.decode_image`).

Why ``tarfile`` and not the ``webdataset`` package: reading shards *into* splits is one pass
over each tar's members in order, which the standard library does in a few lines, with the
member checks this project applies to every archive; the package's value (shuffled,
resumable streaming across workers and ranks) belongs to the streaming mode, not to this reader.
"""

from __future__ import annotations

import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from kubeclr.config import DataConfig, stored_size
from kubeclr.data.cifar import Batch
from kubeclr.data.images import Limits, decode_image
from kubeclr.errors import DataError
from kubeclr.progress import progress

log = logging.getLogger(__name__)

SPLIT_PREFIXES = ("train", "val", "test", "unlabeled")  # shard name = <prefix>-<anything>.tar
CLASSES_FILE = "classes.txt"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTENSION = "cls"
MAX_LABEL_BYTES = 64
MAX_UNNAMED_CLASSES = 10_000  # without classes.txt the names are the indices: a larger index needs the file
SHARD_PATTERN = re.compile(r"^(train|val|test|unlabeled)-[^/]*\.tar$")


def hidden(member: str) -> bool:
    """A member to ignore, as image folders ignore such files: ``.DS_Store``, ``._x`` (macOS tar), ``__MACOSX/``."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(member).parts if part != ".")


def sample_key(member: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name: WebDataset's split at the first dot of the base name.

    >>> sample_key("train/000123.png")
    ('train/000123', 'png')
    >>> sample_key("a.b.cls")
    ('a', 'b.cls')
    """
    path = PurePosixPath(member)
    base, dot, ext = path.name.partition(".")
    key = str(path.with_name(base)) if path.parent != PurePosixPath(".") else base
    return key, ext.lower() if dot else ""


def shard_files(root: Path) -> dict[str, list[Path]]:
    """``{prefix: [shards, sorted]}`` of the shards directly in ``root`` (other files ignored)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if not SHARD_PATTERN.match(path.name):
            continue
        if path.is_symlink():  # as in image folders: a link could lead anywhere
            raise DataError(f"shard {path.name} is a symbolic link; refusing it (copy the shard in instead)")
        if path.is_file():
            found.setdefault(path.name.split("-", 1)[0], []).append(path)
    return found


@dataclass
class Samples:
    """What one split's shards held: encoded images, their labels (-1 without) and the sample names."""

    data: list[bytes] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _members(shard: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    try:
        with tarfile.open(shard, mode="r|") as tar:  # an uncompressed stream: members in order, nothing extracted
            for info in tar:
                yield info, tar
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"shard {shard.name}: not a readable tar file ({exc})") from None


class BadSample(DataError):
    """One sample of a shard could not be used; the message names the shard, the key and why."""


@dataclass
class _Pending:
    key: str
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (extension, bytes)
    label: bytes | None = None
    refused: bool = False  # one of its members was refused (and reported) already


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, bound: int, where: str) -> bytes:
    if info.size > bound:
        raise BadSample(f"{where}: {info.size} bytes, more than data.max_image_bytes={bound}")
    stream = tar.extractfile(info)  # a regular file's bytes, read from the stream: nothing touches the disk
    assert stream is not None
    return stream.read()


def _label(raw: bytes | None, where: str, num_classes: int | None) -> int:
    if raw is None:
        raise BadSample(f"{where}: no {LABEL_EXTENSION} member (a labelled split needs the class index)")
    text = raw.decode("ascii", errors="replace").strip()
    if not text.isdigit():
        raise BadSample(f"{where}: {LABEL_EXTENSION} is {text[:20]!r}, not a class index")
    value = int(text)
    if num_classes is not None and value >= num_classes:
        raise BadSample(f"{where}: class index {value}, but {CLASSES_FILE} names {num_classes} classes")
    return value


def read_split_shards(
    shards: list[Path], *, labelled: bool, num_classes: int | None, limits: Limits, on_bad: str, desc: str
) -> Samples:
    """The samples of one split's shards, in order, their members checked (not yet decoded).

    Raises:
        DataError: an unreadable shard; with ``on_bad == "fail"`` the first bad sample.
    """
    out = Samples()
    rule = _Rule(labelled=labelled, num_classes=num_classes, limits=limits, on_bad=on_bad)
    for shard in shards:
        _read_shard(shard, rule, out, desc)
    return out


@dataclass(frozen=True)
class _Rule:
    labelled: bool
    num_classes: int | None
    limits: Limits
    on_bad: str

    def refuse(self, exc: BadSample, out: Samples) -> None:
        """Raise ``exc`` (``on_bad_image=fail``) or record it as skipped."""
        if self.on_bad == "fail":
            raise exc
        out.skipped.append(str(exc))


def _finish(shard: Path, sample: _Pending, rule: _Rule, out: Samples) -> None:
    if sample.refused:
        return
    where = f"shard {shard.name}, key {sample.key}"
    try:
        if not sample.images:
            raise BadSample(f"{where}: no image ({'/'.join(IMAGE_EXTENSIONS)} member)")
        if len(sample.images) > 1:
            raise BadSample(f"{where}: {len(sample.images)} images; a sample holds one")
        label = _label(sample.label, where, rule.num_classes) if rule.labelled else -1
    except BadSample as exc:
        rule.refuse(exc, out)
        return
    out.data.append(sample.images[0][1])
    out.labels.append(label)
    out.names.append(f"{shard.name}:{sample.key}")


def _read_shard(shard: Path, rule: _Rule, out: Samples, desc: str) -> None:
    seen: set[str] = set()
    pending: _Pending | None = None
    for info, tar in progress(_members(shard), desc=f"{desc} {shard.name}", unit="member"):
        if info.isdir() or hidden(info.name):
            continue
        key, ext = sample_key(info.name)
        where = f"shard {shard.name}, member {info.name}"
        if not info.isreg():
            rule.refuse(BadSample(f"{where}: not a regular file (a link or device); refusing it"), out)
            continue
        if pending is None or key != pending.key:
            if pending is not None:
                _finish(shard, pending, rule, out)
            if key in seen:
                raise DataError(f"shard {shard.name}: key {key} appears twice, apart (a sample's members are adjacent)")
            seen.add(key)
            pending = _Pending(key)
        if ext in IMAGE_EXTENSIONS:
            try:
                pending.images.append((ext, _read_member(tar, info, rule.limits.max_bytes, where)))
            except BadSample as exc:
                rule.refuse(exc, out)
                pending.refused = True
        elif ext == LABEL_EXTENSION:
            if info.size > MAX_LABEL_BYTES:
                rule.refuse(BadSample(f"{where}: {info.size} bytes; a class index is a few digits"), out)
                pending.refused = True
                continue
            pending.label = _read_member(tar, info, MAX_LABEL_BYTES, where)
    if pending is not None:
        _finish(shard, pending, rule, out)


def decode_samples(samples: Samples, size: int, limits: Limits, on_bad: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode every sample's image as an image folder's (``(N, 3, size, size)`` uint8) and its labels."""
    images, labels = [], []
    for data, label, name in progress(
        list(zip(samples.data, samples.labels, samples.names)), desc="decoding shards", unit="image"
    ):
        try:
            images.append(decode_image(data, size, name=name, limits=limits))
        except DataError as exc:
            if on_bad == "fail":
                raise
            samples.skipped.append(str(exc))
            continue
        labels.append(label)
    stacked = np.stack(images) if images else np.zeros((0, 3, size, size), dtype=np.uint8)
    return stacked, np.asarray(labels, dtype=np.int64)


def read_classes(root: Path) -> tuple[str, ...] | None:
    """The names of ``classes.txt`` (blank lines ignored), or None without the file."""
    path = root / CLASSES_FILE
    if path.is_symlink():
        raise DataError(f"{CLASSES_FILE} is a symbolic link; refusing it")
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    names = tuple(n for n in names if n)
    if not names:
        raise DataError(f"{CLASSES_FILE}: no class names")
    if len(set(names)) != len(names):
        raise DataError(f"{CLASSES_FILE}: a class name appears twice")
    return names


def read_shard_samples(d: DataConfig, root: Path, origin: str) -> dict:
    """Every split's samples (encoded, checked, not decoded), the class names and what was skipped.

    Returns:
        ``{"samples": {prefix: Samples}, "class_names": tuple}``; ``samples`` holds the prefixes
        that have shards. With no ``train-*`` and ``test-*`` shards, ``class_names`` is ``()``.

    Raises:
        DataError: no shards, train without test (or the reverse), a bad classes.txt, a bad sample,
            a class index beyond :data:`MAX_UNNAMED_CLASSES` without classes.txt.
    """
    found = shard_files(root)
    if not found:
        raise DataError(
            f"{origin}: no shards (expected train-*.tar and test-*.tar, optional val-*.tar, unlabeled-*.tar)"
        )
    labelled = "train" in found or "test" in found
    if labelled and not ("train" in found and "test" in found):
        have, lack = ("train", "test") if "train" in found else ("test", "train")
        raise DataError(f"{origin}: {have}-*.tar but no {lack}-*.tar shards")
    classes = read_classes(root) if labelled else None
    limits = Limits(max_bytes=d.max_image_bytes, max_pixels=d.max_image_pixels)
    samples = {
        prefix: read_split_shards(
            found[prefix],
            labelled=prefix != "unlabeled",
            num_classes=len(classes) if classes else None,
            limits=limits,
            on_bad=d.on_bad_image,
            desc=prefix,
        )
        for prefix in SPLIT_PREFIXES
        if prefix in found
    }
    for prefix, got in samples.items():
        if prefix != "unlabeled" and not got.labels:
            raise DataError(f"{origin}: no usable {prefix} samples in {len(found[prefix])} shard(s)")
    names: tuple[str, ...] = ()
    if labelled:
        top = max(max(got.labels) for prefix, got in samples.items() if prefix != "unlabeled")
        if classes is None and top >= MAX_UNNAMED_CLASSES:
            raise DataError(
                f"{origin}: class index {top} without {CLASSES_FILE}; add {CLASSES_FILE} (one name per line) "
                f"or use indices below {MAX_UNNAMED_CLASSES}"
            )
        names = classes or tuple(str(i) for i in range(top + 1))
        if len(names) < 2:
            raise DataError(f"{origin}: {len(names)} class(es); at least two are needed")
    return {"samples": samples, "class_names": names}


def decode_chosen(samples: Samples, chosen: np.ndarray, d: DataConfig) -> Batch:
    """Decode the samples at ``chosen`` (indices) as an image folder's images; bad ones per ``on_bad_image``."""
    picked = Samples(
        data=[samples.data[i] for i in chosen],
        labels=[samples.labels[i] for i in chosen],
        names=[samples.names[i] for i in chosen],
        skipped=samples.skipped,
    )
    limits = Limits(max_bytes=d.max_image_bytes, max_pixels=d.max_image_pixels)
    images, labels = decode_samples(picked, stored_size(d), limits, d.on_bad_image)
    return Batch(images=images, labels=labels)
