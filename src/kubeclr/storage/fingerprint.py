"""What a dataset source holds right now, as one digest: the data step's cache key.

KFP caches a task by its inputs. The data step's inputs name the source, not
its content, so a file replaced under the same ``s3://`` prefix would be a
stale cache hit. The pipeline therefore runs a small, never-cached
``fingerprint`` task first and hands its digest to the data step: equal
content, equal digest (a cache hit for the whole run); any changed, added or
removed file, a different digest (the data is read again).

- ``sample`` / ``sample-folder``: the generator's parameters (its output is deterministic);
- a single file (a tarball or archive: ``https://``, ``s3://bucket/key``, local) with ``data.md5``
  set: the URI and the MD5 — the data step checks the content against it (from a mirror, too),
  so nothing is fetched or even reached here;
- ``https://`` with ``md5 none``: the server's ETag / Last-Modified / length, or a value that
  never repeats when it sends none or refuses the HEAD request;
- an ``s3://`` prefix (or an object with ``md5 none``): every key with its size and ETag (a
  listing, no download);
- a local folder (or a file with ``md5 none``): every file's relative path and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

from kubeclr.atomic import file_sha256
from kubeclr.config import DataConfig, parse_md5
from kubeclr.config.data import FOLDERS
from kubeclr.errors import DataError, StorageError
from kubeclr.storage.folders import is_archive
from kubeclr.storage.store import open_store
from kubeclr.uri import redact_uri, split_uri


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _local(path: Path) -> list:
    if path.is_file():
        return [[path.name, file_sha256(path)]]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [[p.relative_to(path).as_posix(), file_sha256(p)] for p in files]


def _https(url: str) -> object:
    unpinned = {"url": url, "unpinned": uuid.uuid4().hex}  # nothing tells us the content: never a cache hit
    try:
        with urlopen(Request(url, method="HEAD", headers={"User-Agent": "kubeclr"}), timeout=30) as response:
            tags = {k: response.headers.get(k) for k in ("ETag", "Last-Modified", "Content-Length")}
    except (OSError, ValueError):  # HEAD refused (presigned URLs, 405) or unreachable: the data step will say
        return unpinned
    return {"url": url, **tags} if tags["ETag"] or tags["Last-Modified"] else unpinned


def _s3(uri: str) -> object:
    base, _, name = uri.rstrip("/").rpartition("/")
    try:
        objects = open_store(uri.rstrip("/")).list_objects("")
        if not objects and name:  # a single object: list its parent, keep that key
            objects = [o for o in open_store(base).list_objects(name) if o[0] == name]
    except StorageError as exc:
        raise DataError(str(exc)) from None
    if not objects:
        raise DataError(f"{redact_uri(uri)}: no such object or prefix")
    return [list(o) for o in objects]


def source_fingerprint(d: DataConfig) -> str:
    """SHA-256 of what ``d.source`` holds now (see the module docstring), with the format.

    Raises:
        DataError: the source does not exist or cannot be listed.
    """
    src, md5 = d.source, parse_md5(d.md5)
    single_file = d.format not in FOLDERS or is_archive(src)
    if src in ("sample", "sample-folder"):
        content: object = {"per_class": d.sample_per_class, "seed": d.seed}
    elif md5 and single_file:
        content = {"md5": md5}
    elif src.startswith(("https://", "http://")):
        content = _https(src)
    elif src.startswith("s3://"):
        content = _s3(src)
    else:
        _, rest = split_uri(src)
        path = Path(os.path.expanduser(rest))
        if not path.exists():
            raise DataError(f"data.source {src}: no such file or folder")
        content = _local(path)
    return _digest({"source": redact_uri(src), "format": d.format, "content": content})
