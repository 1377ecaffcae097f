"""Read files straight out of a (gzipped) tarball without extracting it.

Nothing is written to disk, so no member can land outside a target directory;
still, a tarball that *would* be unsafe to extract — absolute paths, ``..``
components, symbolic or hard links, device or FIFO members — is refused as a
whole, because such an archive is not the CIFAR-10 tarball and may be hostile.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Iterator

from kubeclr.errors import DataError

logger = logging.getLogger(__name__)

# A CIFAR-10 batch is ~30 MB; refuse members far beyond that rather than read them into memory.
MAX_MEMBER_BYTES = 512 * 1024 * 1024


def check_member(member: tarfile.TarInfo, *, origin: str) -> None:
    """Raise :class:`DataError` if ``member`` would be unsafe to extract.

    Args:
        member: one header of the archive.
        origin: the archive's name, for the error message.

    Raises:
        DataError: absolute path, a ``..`` component, a link, a device or FIFO.
    """
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{origin}: member {name!r} has an absolute path; refusing the archive")
    if ".." in path.parts or ".." in name.split("\\"):
        raise DataError(f"{origin}: member {name!r} contains '..'; refusing the archive")
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise DataError(f"{origin}: member {name!r} is a {kind} (to {member.linkname!r}); refusing the archive")
    if member.ischr() or member.isblk() or member.isfifo():
        raise DataError(f"{origin}: member {name!r} is a device or FIFO; refusing the archive")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{origin}: member {name!r} has unsupported type {member.type!r}; refusing the archive")


@contextlib.contextmanager
def open_stream(
    source: str | Path | bytes, *, origin: str
) -> Iterator[Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]]:
    """Stream a tarball's members, each checked with :func:`check_member` before it is yielded.

    Yields an iterator of ``(member, file)``; ``file`` reads a regular member's data (valid until
    the next member is taken) and is None for directories. Read errors of the archive, here or
    while the caller reads a member, become one :class:`DataError` naming ``origin``.

    Raises:
        DataError: not a tar archive, truncated/corrupt compression, or an unsafe member.
    """

    def members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
        for member in tar:
            check_member(member, origin=origin)
            yield member, tar.extractfile(member) if member.isfile() else None

    try:
        fileobj = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115 - closed by the with below
        with fileobj, tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            yield members(tar)
    except FileNotFoundError:
        raise DataError(f"{origin}: no such file") from None
    except tarfile.ReadError as exc:
        raise DataError(f"{origin}: not a readable tar archive, or truncated ({exc})") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{origin}: truncated or corrupt archive ({type(exc).__name__}: {exc})") from None


def read_exactly(fh: IO[bytes], size: int, what: str) -> bytes:
    """``size`` bytes of ``fh``; an archive that ends early raises :class:`EOFError` naming ``what``."""
    data = fh.read(size)
    if len(data) != size:
        raise EOFError(f"member {what} ends early")
    return data


def read_members(source: str | Path | bytes, wanted: Iterable[str], *, origin: str) -> dict[str, bytes]:
    """Return the contents of the ``wanted`` regular files of a tarball.

    The archive is read as a stream (gzip, bz2, xz or plain tar, detected).
    Every member is checked with :func:`check_member`, wanted or not; other
    regular files (the real tarball has a ``readme.html``) are skipped.

    Args:
        source: path of the tarball, or its bytes.
        wanted: member names to return, e.g. ``"cifar-10-batches-py/data_batch_1"``.
        origin: the name to use in errors (path or URI of the tarball).

    Returns:
        ``{name: bytes}`` for the wanted members that were present.

    Raises:
        DataError: not a tar archive, truncated/corrupt compression, or an
            unsafe member.
    """
    wanted = set(wanted)
    found: dict[str, bytes] = {}
    with open_stream(source, origin=origin) as members:
        for member, fh in members:
            if fh is not None and member.name in wanted:
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{origin}: member {member.name!r} is {member.size} bytes, "
                        f"more than the {MAX_MEMBER_BYTES} allowed"
                    )
                found[member.name] = read_exactly(fh, member.size, member.name)
    logger.debug("read %d of %d wanted members from %s", len(found), len(wanted), origin)
    return found
