"""The URI forms every layer agrees on: ``s3://bucket/key``, ``file:///path`` or a plain path.

Pure string rules, shared by the config checks, the stores and the reports.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

from kubeclr.errors import StorageError


def split_uri(uri: str) -> tuple[str, str]:
    """Split ``uri`` into (scheme, rest); plain paths are ``file``."""
    if uri.startswith("s3://"):
        return "s3", uri[len("s3://") :]
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"{uri}: file:// URIs must be absolute (file:///path)")
        return "file", unquote(parsed.path)
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported scheme (allowed: s3://, file://, or a path)")
    return "file", uri


def safe_segment(text: str) -> str:
    """``text`` as one object-key segment: no '/', no '..', only ``[A-Za-z0-9._-]``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")
    return cleaned or "run"


def redact_uri(uri: str) -> str:
    """``uri`` without credentials: user info and a query string (pre-signed URLs) are replaced.

    For anything a person or a log sees: reports, metrics.json, log lines, error messages.
    """
    parsed = urlparse(uri)
    if not parsed.scheme or not parsed.netloc:
        return uri
    netloc = parsed.netloc.rpartition("@")[2]
    if "@" in parsed.netloc:
        netloc = "***@" + netloc
    return parsed._replace(netloc=netloc, query="…" if parsed.query else "", fragment="").geturl()
