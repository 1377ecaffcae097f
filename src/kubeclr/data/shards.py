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

import contextlib
import fnmatch
import hashlib
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Iterator, Protocol, Sequence

import numpy as np

from kubeclr.config import DataConfig, stored_size
from kubeclr.data.cifar import Batch
from kubeclr.data.images import BadImage, Limits, check_image, decode_image
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
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/") if part != ".")


def sample_key(member: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name: WebDataset's split at the first dot of the base name.

    >>> sample_key("train/000123.png")
    ('train/000123', 'png')
    >>> sample_key("a.b.cls")
    ('a', 'b.cls')
    """
    if member.startswith("./") or member.endswith("/") or "//" in member or "/./" in member:
        member = str(PurePosixPath(member))  # ./train/1.png is train/1.png (string work: once per member)
    folder, slash, name = member.rpartition("/")
    base, dot, ext = name.partition(".")
    return (f"{folder}/{base}" if slash else base), ext.lower() if dot else ""


def by_prefix(names: Iterable[str]) -> dict[str, list[str]]:
    """``{prefix: [shard names, sorted]}`` of the names that are shards (others ignored)."""
    found: dict[str, list[str]] = {}
    for name in sorted(names):
        if SHARD_PATTERN.match(name):
            found.setdefault(name.split("-", 1)[0], []).append(name)
    return found


GLOB = re.compile(r"[*?\[{]")
BRACE = re.compile(r"\{([^{}]*)\}")
MAX_EXPANDED = 100_000  # names a brace pattern may expand to


def expand_braces(pattern: str) -> list[str]:
    """WebDataset's brace notation: ``{a,b}`` alternatives and ``{000..009}`` ranges (zero padding kept).

    >>> expand_braces("train-{00..02}.tar")
    ['train-00.tar', 'train-01.tar', 'train-02.tar']
    >>> expand_braces("{train,test}-0.tar")
    ['train-0.tar', 'test-0.tar']

    Raises:
        DataError: a range of more than :data:`MAX_EXPANDED` names, or an empty alternative list.
    """
    found = BRACE.search(pattern)
    if found is None:
        return [pattern]
    body, head, tail = found.group(1), pattern[: found.start()], pattern[found.end() :]
    ends = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if ends:
        lo, hi = int(ends.group(1)), int(ends.group(2))
        if hi < lo or hi - lo >= MAX_EXPANDED:
            raise DataError(f"shard pattern {pattern}: {{{body}}} is not a range of at most {MAX_EXPANDED:,} numbers")
        width = len(ends.group(1))
        parts = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        parts = body.split(",")
        if parts == [""]:
            raise DataError(f"shard pattern {pattern}: empty braces")
    out = [name for part in parts for name in expand_braces(head + part + tail)]
    if len(out) > MAX_EXPANDED:
        raise DataError(f"shard pattern {pattern}: more than {MAX_EXPANDED:,} names")
    return out


def split_pattern(source: str) -> tuple[str, list[str]]:
    """``(where, patterns)``: a source whose last part is a glob or brace pattern (``…/train-{000..009}.tar``,
    ``s3://b/p/*.tar``) selects among the shards of its folder; ``patterns`` is empty for a plain folder."""
    head, _, last = source.rstrip("/").rpartition("/")
    if not head or not GLOB.search(last):
        return source, []
    return head, expand_braces(last)


class ShardDir(Protocol):
    """Where a dataset's shards are: a local folder (:class:`LocalShards`) or an ``s3://`` prefix."""

    source: str  # as shown to people (no credentials)

    def names(self) -> list[str]:
        """The names of the files directly in it."""

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """One file, as a binary stream read from its start."""

    def text(self, name: str) -> str | None:
        """A small text file's contents, or None without it."""


class LocalShards:
    """Shards in a local folder; links are refused (as in image folders: a link could lead anywhere)."""

    def __init__(self, root: Path, source: str | None = None) -> None:
        self.root, self.source = Path(root), source or str(root)

    def names(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_file() or p.is_symlink()]

    def _path(self, name: str) -> Path:
        path = self.root / name
        if path.is_symlink():
            raise DataError(f"{name} in {self.source} is a symbolic link; refusing it (copy the file in instead)")
        return path

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        try:
            return open(self._path(name), "rb")
        except OSError as exc:
            raise DataError(f"shard {name}: cannot be opened ({exc.strerror or exc})") from None

    def text(self, name: str) -> str | None:
        path = self._path(name)
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


class Selected:
    """The shards of another :class:`ShardDir` whose names match glob patterns (``fnmatch``); its other
    files (``classes.txt``) stay readable."""

    def __init__(self, inner: ShardDir, patterns: list[str], source: str) -> None:
        self.inner, self.patterns, self.source = inner, patterns, source

    def names(self) -> list[str]:
        wanted = set()
        for name in self.inner.names():
            if any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                wanted.add(name)
        if not wanted:
            raise DataError(f"{self.source}: no file matches the pattern")
        return sorted(wanted)

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.inner.open(name)

    def text(self, name: str) -> str | None:
        return self.inner.text(name)


def shard_files(root: Path) -> dict[str, list[Path]]:
    """``{prefix: [shards, sorted]}`` of the shards directly in ``root`` (other files ignored)."""
    local = LocalShards(root)
    return {prefix: [local._path(n) for n in names] for prefix, names in by_prefix(local.names()).items()}


@dataclass
class Samples:
    """What one split's shards held: encoded images (unless only indexed), labels (-1 without), names, addresses."""

    data: list[bytes] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    refs: list[tuple[str, int]] = field(default_factory=list)  # (shard name, the sample's position in it)
    skipped: list[str] = field(default_factory=list)


class BadSample(DataError):
    """One sample of a shard could not be used; the message names the shard, the key and why."""


@dataclass(frozen=True)
class Found:
    """One sample of a shard, its members checked, its image not decoded.

    ``position`` is the ordinal of its key in the shard, refused keys counted: with the shard's
    name, the sample's address in a streamed dataset's index (:mod:`kubeclr.data.stream`).
    """

    position: int
    key: str
    image: bytes
    label: int  # -1 in an unlabelled split


@dataclass(frozen=True)
class Rule:
    """How a split's samples are checked, and where the refused ones go under ``on_bad_image=skip``."""

    labelled: bool
    num_classes: int | None
    limits: Limits
    on_bad: str
    skipped: list[str] = field(default_factory=list)

    def refuse(self, exc: BadSample) -> None:
        """Raise ``exc`` (``on_bad_image=fail``) or record it as skipped."""
        if self.on_bad == "fail":
            raise exc
        self.skipped.append(str(exc))


END_OF_ARCHIVE = bytes(1024)  # two zero blocks end every tar (POSIX); a shard cut short lacks them


class HashingReader:
    """A binary stream that counts and hashes (SHA-256) what is read through it, and keeps its last KiB."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha256, self.bytes, self.tail = raw, hashlib.sha256(), 0, b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.bytes += len(data)
        self.tail = (self.tail + data)[-len(END_OF_ARCHIVE) :]
        return data

    def finish(self, name: str) -> None:
        """Read to the end (the digest covers the whole file) and check the tar's end-of-archive marker.

        Raises:
            DataError: the file does not end in the marker: truncated (``tarfile`` reads a tar cut at a
                member boundary as one that simply ends).
        """
        while self.read(1 << 20):
            pass
        if self.tail != END_OF_ARCHIVE:
            raise DataError(f"shard {name}: truncated (it does not end with a tar's end-of-archive marker)")


def _members(name: str, stream: BinaryIO) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # uncompressed: members in order, nothing extracted
            for info in tar:
                yield info, tar
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"shard {name}: not a readable tar file ({exc})") from None


@dataclass
class _Pending:
    key: str
    position: int
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (extension, bytes)
    label: bytes | None = None
    refused: bool = False  # one of its members was refused (and reported) already


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, bound: int, where: str) -> bytes:
    if info.size > bound:
        raise BadSample(f"{where}: {info.size} bytes, more than data.max_image_bytes={bound}")
    stream = tar.extractfile(info)  # a regular file's bytes, read from the stream: nothing touches the disk
    assert stream is not None
    try:
        return stream.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{where}: cannot be read, the shard is truncated or corrupt ({exc})") from None


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


def _finished(name: str, sample: _Pending, rule: Rule) -> Found | None:
    if sample.refused:
        return None
    where = f"shard {name}, key {sample.key}"
    try:
        if not sample.images:
            raise BadSample(f"{where}: no image ({'/'.join(IMAGE_EXTENSIONS)} member)")
        if len(sample.images) > 1:
            raise BadSample(f"{where}: {len(sample.images)} images; a sample holds one")
        label = _label(sample.label, where, rule.num_classes) if rule.labelled else -1
    except BadSample as exc:
        rule.refuse(exc)
        return None
    return Found(sample.position, sample.key, sample.images[0][1], label)


def iter_shard(name: str, stream: HashingReader, rule: Rule, *, desc: str = "") -> Iterator[Found]:
    """The usable samples of one shard read from ``stream``, in order; bad ones per ``rule``.

    Once they are all read, so is the rest of the file (``stream``'s digest covers it) and its
    end-of-archive marker is checked.

    Raises:
        DataError: an unreadable or truncated tar, a key whose members are not adjacent; with
            ``on_bad_image=fail`` the first bad sample (:class:`BadSample`).
    """
    seen: set[str] = set()
    pending: _Pending | None = None
    members = _members(name, stream)
    for info, tar in progress(members, desc=f"{desc} {name}", unit="member") if desc else members:
        if info.isdir() or hidden(info.name):
            continue
        key, ext = sample_key(info.name)
        where = f"shard {name}, member {info.name}"
        if not info.isreg():
            rule.refuse(BadSample(f"{where}: not a regular file (a link or device); refusing it"))
            continue
        if pending is None or key != pending.key:
            if pending is not None and (found := _finished(name, pending, rule)) is not None:
                yield found
            if key in seen:
                raise DataError(f"shard {name}: key {key} appears twice, apart (a sample's members are adjacent)")
            seen.add(key)
            pending = _Pending(key, len(seen) - 1)
        if ext in IMAGE_EXTENSIONS:
            try:
                pending.images.append((ext, _read_member(tar, info, rule.limits.max_bytes, where)))
            except BadSample as exc:
                rule.refuse(exc)
                pending.refused = True
        elif ext == LABEL_EXTENSION:
            if info.size > MAX_LABEL_BYTES:
                rule.refuse(BadSample(f"{where}: {info.size} bytes; a class index is a few digits"))
                pending.refused = True
                continue
            pending.label = _read_member(tar, info, MAX_LABEL_BYTES, where)
    stream.finish(name)  # a shard cut short must not pass for a shorter one, nor its last sample for a bad one
    if pending is not None and (found := _finished(name, pending, rule)) is not None:
        yield found


def read_split_shards(
    where: ShardDir, shards: Sequence[str], rule: Rule, *, desc: str, keep: bool = True
) -> tuple[Samples, dict]:
    """The samples of one split's shards, in order, their members checked (not yet decoded).

    Args:
        keep: keep each image's bytes; else only check its header (:func:`~kubeclr.data.images.check_image`),
            as indexing a streamed dataset does.

    Returns:
        ``(samples, shards)``: ``shards`` is ``{name: {"bytes", "sha256"}}`` of each shard as read.

    Raises:
        DataError: an unreadable shard; with ``on_bad_image=fail`` the first bad sample.
    """
    out, facts = Samples(skipped=rule.skipped), {}
    for shard in shards:
        with where.open(shard) as fh:
            reader = HashingReader(fh)
            for found in iter_shard(shard, reader, rule, desc=desc):
                name = f"{shard}:{found.key}"
                if not keep:
                    try:
                        check_image(found.image, name=name, limits=rule.limits)
                    except BadImage as exc:
                        rule.refuse(BadSample(str(exc)))
                        continue
                out.data.append(found.image if keep else b"")
                out.labels.append(found.label)
                out.names.append(name)
                out.refs.append((shard, found.position))
        facts[shard] = {"bytes": reader.bytes, "sha256": reader.sha256.hexdigest()}
    return out, facts


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


def read_classes(text: str | None) -> tuple[str, ...] | None:
    """The names of a ``classes.txt`` (blank lines ignored), or None without the file."""
    if text is None:
        return None
    names = tuple(n for n in (line.strip() for line in text.splitlines()) if n)
    if not names:
        raise DataError(f"{CLASSES_FILE}: no class names")
    if len(set(names)) != len(names):
        raise DataError(f"{CLASSES_FILE}: a class name appears twice")
    return names


def read_shard_samples(d: DataConfig, where: ShardDir | Path, origin: str, *, keep: bool = True) -> dict:
    """Every split's samples (checked, not decoded), the class names, each shard's size and digest.

    Args:
        keep: keep the encoded images (to decode them next); else check each image's header only
            and keep its address (indexing a streamed dataset).

    Returns:
        ``{"samples": {prefix: Samples}, "class_names": tuple, "shards": {prefix: {name: {"bytes",
        "sha256"}}}}``; ``samples`` holds the prefixes that have shards. With no ``train-*`` and
        ``test-*`` shards, ``class_names`` is ``()``.

    Raises:
        DataError: no shards, train without test (or the reverse), a bad classes.txt, a bad sample,
            a class index beyond :data:`MAX_UNNAMED_CLASSES` without classes.txt.
    """
    where = LocalShards(where) if isinstance(where, Path) else where
    found = by_prefix(where.names())
    if not found:
        raise DataError(
            f"{origin}: no shards (expected train-*.tar and test-*.tar, optional val-*.tar, unlabeled-*.tar)"
        )
    labelled = "train" in found or "test" in found
    if labelled and not ("train" in found and "test" in found):
        have, lack = ("train", "test") if "train" in found else ("test", "train")
        raise DataError(f"{origin}: {have}-*.tar but no {lack}-*.tar shards")
    classes = read_classes(where.text(CLASSES_FILE)) if labelled else None
    limits = Limits(max_bytes=d.max_image_bytes, max_pixels=d.max_image_pixels)
    samples, shards = {}, {}
    for prefix in (p for p in SPLIT_PREFIXES if p in found):
        rule = Rule(prefix != "unlabeled", len(classes) if classes else None, limits, d.on_bad_image)
        samples[prefix], shards[prefix] = read_split_shards(where, found[prefix], rule, desc=prefix, keep=keep)
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
    return {"samples": samples, "class_names": names, "shards": shards}


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
