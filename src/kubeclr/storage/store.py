"""Object storage behind one small URI interface.

``open_store(uri)`` returns a :class:`~kubeclr.core.checkpoint.Store` rooted at a prefix: ``file:///abs``
or a plain path gives :class:`LocalStore`; ``s3://bucket/prefix`` gives the S3
store (the only place boto3 is imported). Keys are relative, '/'-separated.

Training code receives a Store; it never learns which backend sits behind it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from kubeclr.atomic import atomic_path
from kubeclr.core.checkpoint import Store
from kubeclr.errors import ObjectNotFound, StorageError
from kubeclr.uri import split_uri


def open_store(uri: str) -> Store:
    """Open the store rooted at ``uri`` (``s3://bucket/prefix``, ``file:///dir`` or a dir)."""
    scheme, rest = split_uri(uri)
    if scheme == "s3":
        from kubeclr.storage import s3  # boto3 is imported only when S3 is used

        return s3.S3Store(uri)
    return LocalStore(rest)


def parent_and_key(uri: str) -> tuple[Store, str]:
    """Open the store of ``uri``'s parent and return it with the final key (for single objects)."""
    base, _, name = uri.rstrip("/").rpartition("/")
    if base == "file://":  # file:///name: an object at the filesystem root
        base = "file:///"
    if not name or not base or base.endswith(":/") or base == "s3:/":
        raise StorageError(f"{uri}: expected a URI of an object, like s3://bucket/key or file:///dir/file")
    return open_store(base), name


class LocalStore:
    """A directory on the local filesystem; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.expanduser(str(root)))
        self.uri = self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        root = self.root.resolve()
        if path != root and root not in path.parents:
            raise StorageError(f"{self.uri}: key {key!r} escapes the store")
        return path

    @contextlib.contextmanager
    def _os_errors(self, key: str) -> Iterator[None]:
        """Filesystem failures (permissions, full disk, read-only mount) as one line naming the object."""
        try:
            yield
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.uri}/{key}: no such object") from None
        except OSError as exc:
            raise StorageError(f"{self.uri}/{key}: {exc.strerror or exc}") from None

    def read_bytes(self, key: str) -> bytes:
        with self._os_errors(key):
            return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._os_errors(key), atomic_path(self._path(key)) as tmp:
            tmp.write_bytes(data)

    def get_file(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(f"{self.uri}/{key}: no such object")
        with self._os_errors(key), atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)

    def put_file(self, src: Path, key: str) -> None:
        with self._os_errors(key), atomic_path(self._path(key)) as tmp:
            shutil.copyfile(src, tmp)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_objects(self, prefix: str = "") -> list[tuple[str, int, str]]:
        """Sorted ``(key, size, modification time in ns)`` of the files under ``prefix`` (hidden files left out)."""
        root = self.root.resolve()
        if not root.is_dir():
            return []
        found = []
        for p in root.rglob("*"):
            key = p.relative_to(root).as_posix()
            if p.is_file() and key.startswith(prefix) and not p.name.startswith("."):
                st = p.stat()
                found.append((key, st.st_size, str(st.st_mtime_ns)))
        return sorted(found)

    def list(self, prefix: str = "") -> list[str]:
        return [key for key, _, _ in self.list_objects(prefix)]

    def delete(self, key: str) -> None:
        with self._os_errors(key):
            self._path(key).unlink(missing_ok=True)
