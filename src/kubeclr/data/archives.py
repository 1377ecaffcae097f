"""Extract a user's tar, tar.gz or zip archive into a directory, refusing anything unsafe.

An image folder archive is user content. Every member is checked before a
byte of it is written: no absolute path, no ``..``, no link, device or FIFO
(tar: :func:`kubeclr.data.safe_tar.check_member`; zip: the same rules, with a
symbolic link recognised by its Unix mode bits), no member larger than the
image size limit, and no more than ``max_total_bytes`` in all (a zip bomb
declares small sizes and inflates; the bytes actually written are counted).
A refused archive leaves nothing behind in ``dest``.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from kubeclr.data.safe_tar import open_stream
from kubeclr.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
BLOCK = 4096  # every file costs at least a block (and an inode): a million empty members are not free
MAX_MEMBERS = 5_000_000
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header, or an empty zip


def _check_zip_member(info: zipfile.ZipInfo, *, origin: str) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{origin}: member {name!r} has an absolute path; refusing the archive")
    if ".." in path.parts:
        raise DataError(f"{origin}: member {name!r} contains '..'; refusing the archive")
    kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type bits; 0 when the zip tool wrote none
    if kind == stat.S_IFLNK:
        raise DataError(f"{origin}: member {name!r} is a symbolic link; refusing the archive")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"{origin}: member {name!r} is not a regular file or folder; refusing the archive")


def _copy(src: IO[bytes], root: Path, dest: Path, name: str, limit: int, budget: list[int], origin: str) -> None:
    """Copy one member to ``dest``, refusing it past ``limit`` bytes or past the archive's budget."""
    if not dest.resolve().is_relative_to(root.resolve()):  # the name checks already refused this; belt and braces
        raise DataError(f"{origin}: member {name!r} would land outside the target folder; refusing the archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > limit:
                raise DataError(f"{origin}: member {name!r} is larger than data.max_image_bytes={limit}")
            if budget[0] < 0:
                _over_budget(origin)
            out.write(chunk)
    budget[0] -= max(0, BLOCK - written)
    budget[1] -= 1
    if budget[0] < 0 or budget[1] < 0:
        _over_budget(origin)


def _over_budget(origin: str) -> None:
    raise DataError(
        f"{origin}: the archive expands to more than the allowed total (data.max_archive_bytes, the free "
        f"disk, or {MAX_MEMBERS:,} files); refusing it"
    )


def _extract_tar(path: Path, dest: Path, origin: str, member_limit: int, budget: list[int]) -> int:
    count = 0
    with open_stream(path, origin=origin) as members:
        for member, fh in members:
            if fh is None:
                continue
            if member.size > member_limit:
                raise DataError(f"{origin}: member {member.name!r} is larger than data.max_image_bytes={member_limit}")
            _copy(fh, dest, dest / member.name, member.name, member_limit, budget, origin)
            count += 1
    return count


def _extract_zip(path: Path, dest: Path, origin: str, member_limit: int, budget: list[int]) -> int:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:  # every member is checked before anything is written
                _check_zip_member(info, origin=origin)
                if info.file_size > member_limit:
                    raise DataError(
                        f"{origin}: member {info.filename!r} is larger than data.max_image_bytes={member_limit}"
                    )
            count = 0
            for info in infos:
                if info.is_dir():
                    continue
                with zf.open(info) as fh:
                    _copy(fh, dest, dest / info.filename, info.filename, member_limit, budget, origin)
                count += 1
    except zipfile.BadZipFile as exc:
        raise DataError(f"{origin}: not a readable zip archive ({exc})") from None
    except (OSError, EOFError, RuntimeError, NotImplementedError) as exc:  # RuntimeError: encrypted
        raise DataError(f"{origin}: truncated, corrupt or encrypted zip ({type(exc).__name__}: {exc})") from None
    return count


def extract_archive(path: Path, dest: Path, *, origin: str, member_limit: int, max_total_bytes: int) -> int:
    """Extract a tar (any compression) or zip archive into the empty folder ``dest``.

    At most ``max_total_bytes`` are written (each file charged at least 4 KiB) and at most
    :data:`MAX_MEMBERS` files.

    Args:
        path: the archive.
        dest: target folder; created, and removed again if the archive is refused.
        origin: the archive's URI, for errors.
        member_limit: largest member accepted (``data.max_image_bytes``).
        max_total_bytes: most bytes written in all.

    Returns:
        The number of files extracted.

    Raises:
        DataError: an unsafe member, a member or total over its limit, or a corrupt archive.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
    dest.mkdir(parents=True, exist_ok=True)
    budget = [max_total_bytes, MAX_MEMBERS]  # bytes, files
    try:
        extract = _extract_zip if magic in ZIP_MAGIC else _extract_tar
        count = extract(path, dest, origin, member_limit, budget)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    log.info("extracted %d files of %s (%d bytes)", count, origin, max_total_bytes - budget[0])
    return count
