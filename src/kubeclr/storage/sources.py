"""Where a dataset file comes from: URI dispatch, cached download, MD5, mirror.

``data.source`` names one file for every format except image folders, and this
module fetches it; the format's reader then parses it (:mod:`kubeclr.data.formats`):

- ``cifar10``: the ``cifar-10-python.tar.gz`` tarball (python pickles, read safely);
- ``cifar100``: the ``cifar-100-python.tar.gz`` tarball;
- ``stl10``: the ``stl10_binary.tar.gz`` tarball (binary planes);
- ``imagefolder``: a folder, an archive or an ``s3://`` prefix, resolved by
  :mod:`kubeclr.storage.folders` (an archive is fetched here first).

The file behind a source:

- ``https://…`` (or ``http://``): downloaded into ``data.cache_dir`` with a
  progress bar; an interrupted download leaves ``<file>.part`` and the next run
  resumes it with an HTTP ``Range`` request.
- ``s3://bucket/key``: fetched through :mod:`kubeclr.storage.store` into the cache.
- ``file:///path`` or a plain path: read in place.
- ``sample`` (``cifar10`` only): the synthetic CIFAR-layout dataset of
  :mod:`kubeclr.data.sample`, generated in memory (its MD5 is not checked);
  ``sample-folder`` is the image-folder counterpart.

Every file is MD5-verified against ``data.md5`` unless that is ``none``. With a
mirror (``storage.mirror_uri``) the file is looked up first at
``<mirror>/<md5, or a digest of the URI>/cifar-10-python.tar.gz`` (one fixed name
whatever the format; the directory tells files apart) and uploaded there after
a verified fetch from the source, so clusters download the internet copy once.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from kubeclr.config import DataConfig, check_source_scheme, parse_md5
from kubeclr.data.sample import sample_tarball
from kubeclr.errors import ConfigError, DataError, StorageError
from kubeclr.progress import byte_bar
from kubeclr.storage.store import open_store, parent_and_key
from kubeclr.uri import redact_uri, split_uri

logger = logging.getLogger(__name__)

MIRROR_NAME = "cifar-10-python.tar.gz"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Tarball:
    """A fetched, verified tarball.

    Attributes:
        data: the file (in the cache or in place), or the bytes of a generated sample.
        source: the URI it came from (``"sample"`` for the synthetic set).
        md5: its actual MD5, hex.
        synthetic: True for the ``sample`` source.
    """

    data: Path | bytes
    source: str
    md5: str
    synthetic: bool


def md5_of(path: Path) -> str:
    """MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: str | None, origin: str) -> str:
    actual = md5_of(path)
    if expected is not None and actual != expected:
        raise DataError(f"{origin}: MD5 mismatch (expected {expected}, got {actual})")
    return actual


def cache_path(cache_dir: str, uri: str) -> Path:
    """Cache file of ``uri``: ``<cache_dir>/downloads/<hash of uri>-<file name>``."""
    name = os.path.basename(urlparse(uri).path.rstrip("/")) or "download"
    tag = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(os.path.expanduser(cache_dir)) / "downloads" / f"{tag}-{name}"


def download(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if a previous try left one.

    Args:
        url: ``http(s)://`` URL.
        dest: final path; it appears only once the whole body has arrived.
        timeout: socket timeout in seconds.

    Raises:
        DataError: unreachable host, HTTP error, or a connection that broke
            off (the ``.part`` file is kept for the next try).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"User-Agent": "kubeclr"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is not a prefix of this file: start over
            part.unlink()
            return download(url, dest, timeout=timeout)
        raise DataError(f"{redact_uri(url)}: HTTP error {exc.code} {exc.reason}") from None
    except (URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{redact_uri(url)}: cannot download ({reason})") from None
    with response:
        resumed = (
            offset
            and response.status == 206
            and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        )
        if not resumed:
            offset = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        logger.info("downloading %s%s", redact_uri(url), f" (resuming at {offset} bytes)" if offset else "")
        with open(part, "ab" if offset else "wb") as fh, byte_bar(total, dest.name) as bar:
            bar.update(offset)
            try:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise DataError(
                    f"{redact_uri(url)}: download broke off after {fh.tell()} bytes "
                    f"({type(exc).__name__}); run again to resume"
                ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"{redact_uri(url)}: download broke off after {size} of {total} bytes; run again to resume")
    os.replace(part, dest)


def _fetch_into_cache(uri: str, scheme: str, cache_dir: str, expected: str | None) -> Path:
    """Fetch an https:// or s3:// source into the cache (reusing a verified cached copy)."""
    dest = cache_path(cache_dir, uri)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"data.cache_dir={cache_dir!r}: cannot create {dest.parent} ({exc.strerror})") from None
    if dest.is_file():
        if expected is None or md5_of(dest) == expected:
            logger.info("using cached %s (%s)", redact_uri(uri), dest)
            return dest
        dest.unlink()  # stale or corrupt: fetch again
    if scheme == "s3":
        try:
            store, key = parent_and_key(uri)
            store.get_file(key, dest)
        except StorageError as exc:
            raise DataError(str(exc)) from None
    else:
        download(uri, dest)
    try:
        _verified(dest, expected, uri)
    except DataError:
        dest.unlink(missing_ok=True)  # never leave a file that fails its check in the cache
        raise
    return dest


def local_source(uri: str, *, folder_ok: bool = False) -> Path | None:
    """The file (or, with ``folder_ok``, folder) a local ``data.source`` names; None for remote or sample sources.

    Raises:
        DataError: an unsupported scheme, or no such file.
    """
    if uri in ("sample", "sample-folder") or uri.startswith(("https://", "http://", "s3://")):
        return None
    try:
        check_source_scheme(uri)  # for a DataConfig made without the config checks
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    try:
        _, rest = split_uri(uri)
    except StorageError as exc:
        raise DataError(f"data.source: {exc}") from None
    path = Path(os.path.expanduser(rest))
    if folder_ok and path.is_dir():
        return path
    if not path.is_file():
        raise DataError(f"data.source {uri}: {'not a file' if path.exists() else 'no such file'}")
    return path


def _fetch_source(cfg: DataConfig, expected: str | None) -> Path:
    uri = cfg.source
    if uri.startswith(("https://", "http://")):
        return _fetch_into_cache(uri, "https", cfg.cache_dir, expected)
    if uri.startswith("s3://"):
        return _fetch_into_cache(uri, "s3", cfg.cache_dir, expected)
    path = local_source(uri)
    assert path is not None  # 'sample' never reaches here
    _verified(path, expected, uri)
    return path


def _mirror_key(cfg: DataConfig, expected: str | None) -> str:
    """By MD5; unverified sources (md5 none) by a digest of their URI, so two sources never share a copy."""
    return f"{expected or 'uri-' + hashlib.sha256(cfg.source.encode()).hexdigest()[:16]}/{MIRROR_NAME}"


def _from_mirror(mirror_uri: str, key: str, cfg: DataConfig, expected: str | None) -> Path | None:
    """The mirrored tarball, verified, or None when absent, unreachable or corrupt."""
    uri = f"{mirror_uri.rstrip('/')}/{key}"
    try:
        store = open_store(mirror_uri)
        if not store.exists(key):
            return None
        dest = cache_path(cfg.cache_dir, uri)
        store.get_file(key, dest)
    except StorageError as exc:
        logger.warning("mirror unavailable, using the source instead: %s", exc)
        return None
    try:
        _verified(dest, expected, uri)
    except DataError as exc:
        logger.warning("ignoring the mirrored copy: %s", exc)
        dest.unlink(missing_ok=True)
        return None
    logger.info("using the mirrored tarball %s", uri)
    return dest


def _to_mirror(mirror_uri: str, key: str, path: Path) -> None:
    try:
        open_store(mirror_uri).put_file(path, key)
        logger.info("mirrored the tarball to %s/%s", mirror_uri.rstrip("/"), key)
    except StorageError as exc:
        logger.warning("could not mirror the tarball: %s", exc)


def fetch_tarball(cfg: DataConfig, mirror_uri: str = "") -> Tarball:
    """Fetch and verify the dataset tarball named by ``cfg.source``.

    Args:
        cfg: the data section (``source``, ``md5``, ``cache_dir``, ``sample_per_class``, ``seed``).
        mirror_uri: ``storage.mirror_uri`` ('' = no mirror).

    Returns:
        The verified :class:`Tarball`.

    Raises:
        DataError: unreachable source, HTTP error, missing file, MD5 mismatch.
        ConfigError: a malformed ``data.md5``.
    """
    if cfg.source == "sample":
        data = sample_tarball(cfg.sample_per_class, cfg.seed)
        return Tarball(
            data=data, source="sample", synthetic=True, md5=hashlib.md5(data, usedforsecurity=False).hexdigest()
        )
    expected = parse_md5(cfg.md5)
    if expected is None:
        logger.warning("data.md5 is 'none': the tarball from %s is not verified", redact_uri(cfg.source))
    key = _mirror_key(cfg, expected)
    path = _from_mirror(mirror_uri, key, cfg, expected) if mirror_uri else None
    from_mirror = path is not None
    if path is None:
        path = _fetch_source(cfg, expected)
    md5 = md5_of(path)
    if mirror_uri and not from_mirror:
        _to_mirror(mirror_uri, key, path)
    return Tarball(data=path, source=redact_uri(cfg.source), md5=md5, synthetic=False)
