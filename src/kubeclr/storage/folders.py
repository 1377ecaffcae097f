"""Where an image folder comes from: a local folder, an archive anywhere, or an s3:// prefix.

``data.source`` for ``data.format=imagefolder``:

- a local folder (a path or ``file:///dir``): read in place;
- a ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` file — local, ``https://`` or
  ``s3://bucket/key`` — fetched and MD5-checked like the CIFAR tarball (:mod:`kubeclr.storage.sources`),
  then extracted safely (:mod:`kubeclr.data.archives`) into a temporary folder;
- any other ``s3://bucket/prefix``: listed (paginated) and downloaded with concurrent requests into a
  temporary folder, each key checked to stay inside it and to be no larger than ``data.max_image_bytes``;
- ``sample-folder``: the synthetic folder of :mod:`kubeclr.data.sample_folder`, generated offline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

from kubeclr.config import DataConfig, check_folder_source
from kubeclr.data.archives import extract_archive
from kubeclr.data.sample_folder import write_sample_folder
from kubeclr.data.shards import LocalShards, Selected, ShardDir, split_pattern
from kubeclr.errors import ConfigError, DataError, StorageError
from kubeclr.progress import progress
from kubeclr.storage.sources import fetch_tarball
from kubeclr.storage.store import open_store
from kubeclr.uri import redact_uri, split_uri

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
DOWNLOADS = 16  # concurrent S3 requests
DISK_MARGIN = 256 * 1024 * 1024  # left free when extracting


@dataclass(frozen=True)
class LocalFolder:
    """An image folder on local disk: ``path``, the ``source`` it came from, whether it is synthetic."""

    path: Path
    source: str
    synthetic: bool = False


def is_archive(uri: str) -> bool:
    return uri.lower().rstrip("/").endswith(ARCHIVE_SUFFIXES)


def _safe_key(key: str, origin: str) -> str:
    parts = PurePosixPath(key).parts
    if key.startswith("/") or ".." in parts or "\\" in key:
        raise DataError(f"{origin}: object key {key!r} would land outside the download folder; refusing it")
    return key


def _hidden_key(key: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(key).parts)


def download_prefix(uri: str, dest: Path, *, max_bytes: int, workers: int = DOWNLOADS) -> int:
    """Download every object under the ``s3://`` prefix ``uri`` into ``dest``; returns the count.

    Hidden keys (``.git/…``, ``.DS_Store``) are not downloaded: the layout ignores them anyway.

    Raises:
        DataError: no objects, an object over ``max_bytes``, a key that would escape ``dest``, more
            bytes than the free disk, or a storage or disk failure (named).
    """
    shown = redact_uri(uri)
    try:
        store = open_store(uri.rstrip("/"))
        objects = [o for o in store.list_objects("") if not _hidden_key(o[0])]
    except StorageError as exc:
        raise DataError(str(exc)) from None
    if not objects:
        raise DataError(
            f"{shown}: no objects under this prefix (an image folder needs images: train/<class>/ and "
            "test/<class>/, or unlabeled/, or images at its root)"
        )
    for key, size, _ in objects:
        _safe_key(key, shown)
        if size > max_bytes:
            raise DataError(f"{shown}/{key}: {size} bytes, more than data.max_image_bytes={max_bytes}")
    dest.mkdir(parents=True, exist_ok=True)
    total, free = sum(size for _, size, _ in objects), shutil.disk_usage(dest).free - DISK_MARGIN
    if total > free:
        raise DataError(
            f"{shown}: {total} bytes in {len(objects)} objects, more than the {max(free, 0)} bytes free here"
        )
    log.info(
        "downloading %d objects (%d bytes) from %s with %d concurrent requests", len(objects), total, shown, workers
    )

    def get(key: str) -> None:
        try:
            store.get_file(key, dest / key)
        except OSError as exc:  # disk full, or keys 'a' and 'a/b' that cannot both be files
            raise DataError(f"{shown}/{key}: cannot be written here ({exc.strerror or exc})") from None
        except StorageError as exc:
            raise DataError(str(exc)) from None

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(get, key) for key, _, _ in objects]
        for future in progress(as_completed(futures), total=len(futures), desc="download", unit="file"):
            future.result()  # the first failure ends the download
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, nothing more is fetched
    return len(objects)


def _checked_local(d: DataConfig) -> Path | None:
    """The local folder ``d.source`` names (None: it must be fetched), once the source is checked."""
    try:
        check_folder_source(d)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    return _local_dir(d.source)


def _local_dir(uri: str) -> Path | None:
    if uri.startswith(("https://", "http://", "s3://")) or uri == "sample-folder":
        return None
    _, rest = split_uri(uri)
    path = Path(os.path.expanduser(rest))
    return path if path.is_dir() else None


@contextlib.contextmanager
def image_folder(d: DataConfig, mirror_uri: str = "") -> Iterator[LocalFolder]:
    """The image folder ``d.source`` names, on local disk for the duration of the ``with``.

    Temporary copies (downloads, extracted archives, the generated sample) are removed afterwards.

    Raises:
        DataError: see the module docstring; an unreadable source is named.
    """
    local = _checked_local(d)
    if local is not None:
        yield LocalFolder(local, d.source)
        return
    with tempfile.TemporaryDirectory(prefix="kubeclr-folder-") as tmp:
        dest = Path(tmp) / "dataset"
        if d.source == "sample-folder":
            write_sample_folder(dest, d.sample_per_class, d.seed)
            yield LocalFolder(dest, "sample-folder", synthetic=True)
        elif d.source.startswith("s3://") and not is_archive(d.source):
            download_prefix(d.source, dest, max_bytes=d.max_image_bytes)
            yield LocalFolder(dest, redact_uri(d.source))
        else:
            if not is_archive(d.source):
                raise DataError(
                    f"data.source {redact_uri(d.source)}: an image folder is a folder, an s3:// prefix, or an "
                    f"archive ending in {', '.join(ARCHIVE_SUFFIXES)}"
                )
            archive = fetch_tarball(d, mirror_uri)
            free = shutil.disk_usage(tmp).free - DISK_MARGIN
            extract_archive(
                Path(archive.data),
                dest,
                origin=archive.source,
                member_limit=d.max_image_bytes,
                max_total_bytes=max(min(free, d.max_archive_bytes), 0),
            )
            yield LocalFolder(dest, archive.source)


class S3Shards:
    """Shards under an ``s3://`` prefix, each read as a stream over the network (nothing downloaded first).

    Picklable (it travels to DataLoader processes): each process opens its own client.
    """

    def __init__(self, uri: str) -> None:
        self.uri, self.source = uri.rstrip("/"), redact_uri(uri.rstrip("/"))
        self._client_store = self._open()  # a bad URI fails here, not in a decoding process
        self._sizes: dict[str, int] | None = None

    def _open(self):
        try:
            return open_store(self.uri)
        except StorageError as exc:
            raise DataError(str(exc)) from None

    @property
    def _store(self):
        if self._client_store is None:  # unpickled in a decoding process
            self._client_store = self._open()
        return self._client_store

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client_store": None}

    def names(self) -> list[str]:
        if self._sizes is None:
            try:
                self._sizes = {k: size for k, size, _ in self._store.list_objects("") if "/" not in k}
            except StorageError as exc:
                raise DataError(str(exc)) from None
        return list(self._sizes)

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return _as_data_error(self._store.open_stream(name))

    def text(self, name: str) -> str | None:
        if name not in self.names():
            return None
        if self._sizes[name] > MAX_TEXT_BYTES:
            raise DataError(f"{self.source}/{name}: {self._sizes[name]} bytes; a class list is far smaller")
        try:
            return self._store.read_bytes(name).decode("utf-8", errors="replace")
        except StorageError as exc:
            raise DataError(str(exc)) from None


MAX_TEXT_BYTES = 16 * 2**20  # classes.txt of an S3 prefix


@contextlib.contextmanager
def _as_data_error(stream: contextlib.AbstractContextManager[BinaryIO]) -> Iterator[BinaryIO]:
    try:
        with stream as fh:
            yield fh
    except StorageError as exc:
        raise DataError(str(exc)) from None


def shard_dir(source: str) -> ShardDir:
    """The shards ``source`` names, where they are: a local folder (path or ``file://``) or an ``s3://``
    prefix, optionally ending in a glob or brace pattern that selects some of its shards
    (``…/train-{000000..000099}.tar``; :func:`~kubeclr.data.shards.split_pattern`).

    Raises:
        DataError: neither a folder nor an ``s3://`` prefix; a bad pattern.
    """
    where, patterns = split_pattern(source)
    if where.startswith("s3://"):
        found: ShardDir = S3Shards(where)
    else:
        local = _local_dir(where)
        if local is None:
            raise DataError(f"data.source {redact_uri(source)}: shards are read from a folder or an s3:// prefix")
        found = LocalShards(local, where)
    return Selected(found, patterns, redact_uri(source)) if patterns else found


def checked_shard_dir(d: DataConfig) -> ShardDir:
    """:func:`shard_dir` of ``d.source``, once the source is checked (:func:`check_folder_source`)."""
    try:
        check_folder_source(d)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    return shard_dir(d.source)
