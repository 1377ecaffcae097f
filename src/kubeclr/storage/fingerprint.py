"""What a dataset source holds right now, as one digest: the data step's cache key.

KFP caches a task by its inputs. The data step's inputs name the source, not
its content, so a file replaced under the same ``s3://`` prefix would be a
stale cache hit. The pipeline therefore runs a small, never-cached
``fingerprint`` task first and hands its digest to the data step: equal
content, equal digest (a cache hit for the whole run); any changed, added or
removed file, a different digest (the data is read again).

- ``sample`` / ``sample-folder``: the generator's parameters (its output is deterministic);
- ``https://``: the URL and ``data.md5`` (the download is checked against it); with ``md5 none``
  the server's ETag / Last-Modified / length, or a value that never repeats when it sends none;
- ``s3://`` object or prefix: every key with its size and ETag (a listing, no download);
- a local file or folder: every file's relative path and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

from kubeclr.config import DataConfig, parse_md5
from kubeclr.errors import DataError, StorageError
from kubeclr.storage.store import open_store
from kubeclr.uri import redact_uri, split_uri

_CHUNK = 1 << 20


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _local(path: Path) -> list:
    if path.is_file():
        return [[path.name, file_sha256(path)]]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [[p.relative_to(path).as_posix(), file_sha256(p)] for p in files]


def _https(url: str, md5: str | None) -> object:
    if md5:
        return {"url": url, "md5": md5}
    try:
        with urlopen(Request(url, method="HEAD", headers={"User-Agent": "kubeclr"}), timeout=30) as response:
            tags = {k: response.headers.get(k) for k in ("ETag", "Last-Modified", "Content-Length")}
    except OSError as exc:
        raise DataError(f"{redact_uri(url)}: cannot be reached ({getattr(exc, 'reason', exc)})") from None
    if not (tags["ETag"] or tags["Last-Modified"]):
        return {"url": url, "unpinned": uuid.uuid4().hex}  # nothing tells us the content: never a cache hit
    return {"url": url, **tags}


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
    src = d.source
    if src in ("sample", "sample-folder"):
        content: object = {"per_class": d.sample_per_class, "seed": d.seed}
    elif src.startswith(("https://", "http://")):
        content = _https(src, parse_md5(d.md5))
    elif src.startswith("s3://"):
        content = _s3(src)
    else:
        _, rest = split_uri(src)
        path = Path(os.path.expanduser(rest))
        if not path.exists():
            raise DataError(f"data.source {src}: no such file or folder")
        content = _local(path)
    return _digest({"source": redact_uri(src), "format": d.format, "content": content})
