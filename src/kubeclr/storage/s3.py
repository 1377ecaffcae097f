"""S3-compatible object storage (AWS, SeaweedFS, MinIO): the only module that imports boto3.

:class:`S3Store` implements :class:`kubeclr.storage.store.Store` over one bucket and
key prefix. Everything is read the way boto3 reads it — ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or IRSA, profiles, …),
``AWS_DEFAULT_REGION`` (``us-east-1`` when unset) — plus a few knobs of ours:

=================================  =========  ================================================
variable                           default    meaning
=================================  =========  ================================================
``KUBECLR_S3_ADDRESSING``          ``path``   ``path`` (SeaweedFS/MinIO), ``virtual`` or ``auto``
``KUBECLR_S3_MAX_ATTEMPTS``        ``4``      botocore adaptive-retry attempts per request
``KUBECLR_S3_CONNECT_TIMEOUT``     ``5``      seconds to open a connection
``KUBECLR_S3_READ_TIMEOUT``        ``60``     seconds to wait for a response
``KUBECLR_S3_MULTIPART_MB``        ``64``     objects from this size on go in parts of this size
``KUBECLR_S3_CHECKSUM``            ``SHA256`` S3 checksum sent with uploads (``CRC32``, ``none``)
=================================  =========  ================================================

Integrity: besides the S3 checksum (which the server verifies on upload and
botocore on download where the server returns one), every object we write
carries the SHA-256 of its bytes in ``x-amz-meta-sha256``; reads recompute it
and raise :class:`StorageError` naming the URI on mismatch. Objects written by
other tools (no digest) are accepted as they are.

Every failure a user can cause — missing bucket, wrong credentials, an
unreachable endpoint, a missing object — becomes one :class:`StorageError`
line. Credentials never appear in messages or logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import boto3
import boto3.exceptions
import botocore.exceptions as bx
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

from kubeclr.atomic import atomic_path, file_sha256
from kubeclr.errors import IntegrityError, ObjectNotFound, StorageError

log = logging.getLogger(__name__)

DIGEST_KEY = "sha256"  # sent as the x-amz-meta-sha256 header
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_UNREACHABLE = (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise StorageError(f"{name}={raw!r}: expected an integer") from None


def make_client() -> Any:
    """A boto3 S3 client configured from the environment (see the module docstring)."""
    addressing = os.environ.get("KUBECLR_S3_ADDRESSING", "path")
    if addressing not in ("path", "virtual", "auto"):
        raise StorageError(f"KUBECLR_S3_ADDRESSING={addressing!r}: expected path, virtual or auto")
    config = BotoConfig(
        retries={"mode": "adaptive", "max_attempts": _env_int("KUBECLR_S3_MAX_ATTEMPTS", 4)},
        connect_timeout=_env_int("KUBECLR_S3_CONNECT_TIMEOUT", 5),
        read_timeout=_env_int("KUBECLR_S3_READ_TIMEOUT", 60),
        s3={"addressing_style": addressing},
    )
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    return session.client("s3", region_name=region, config=config)


def transfer_config() -> TransferConfig:
    """Multipart threshold and part size from ``KUBECLR_S3_MULTIPART_MB`` (min 5 MiB, S3's part floor)."""
    size = max(5, _env_int("KUBECLR_S3_MULTIPART_MB", 64)) * 2**20
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size, use_threads=True)


def _checksum_algorithm() -> str | None:
    algo = os.environ.get("KUBECLR_S3_CHECKSUM", "SHA256").upper()
    if algo == "NONE":
        return None
    if algo not in ("SHA256", "SHA1", "CRC32", "CRC32C"):
        raise StorageError(f"KUBECLR_S3_CHECKSUM={algo!r}: expected SHA256, CRC32, CRC32C, SHA1 or none")
    return algo


def _root_cause(exc: BaseException) -> BaseException:
    """The botocore error behind boto3's transfer wrappers (S3UploadFailedError keeps it as context)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (bx.ClientError, bx.BotoCoreError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


class S3Store:
    """A key prefix in an S3 bucket (``s3://bucket/prefix``).

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: a boto3 S3 client (default: :func:`make_client`).
        page_size: keys per ListObjectsV2 page (S3's maximum is 1000).

    Raises:
        StorageError: the URI has no bucket.
    """

    def __init__(self, uri: str, *, client: Any = None, page_size: int = 1000) -> None:
        if not uri.startswith("s3://"):
            raise StorageError(f"{uri}: not an s3:// URI")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(f"{uri}: missing bucket name (expected s3://bucket/prefix)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client or make_client()
        self._transfer = transfer_config()
        self._checksum = _checksum_algorithm()
        self._bucket_checked = False
        self._page_size = page_size

    # -- helpers -------------------------------------------------------------
    def _key(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or ".." in parts:
            raise StorageError(f"{self.uri}: invalid key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: BaseException, key: str | None, action: str) -> StorageError:
        """Map a boto error to one line that names the URI and the cause."""
        where = f"{self.uri}/{key}" if key else self.uri
        cause = _root_cause(exc)
        if isinstance(cause, bx.ClientError):
            err = cause.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in _AUTH_CODES:
                return StorageError(
                    f"{where}: access denied ({code}); check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY and the bucket policy"
                )
            if code in _MISSING_CODES:
                return ObjectNotFound(f"{where}: no such object")
            return StorageError(f"{where}: {action} failed: {code} {err.get('Message', '')}".rstrip())
        if isinstance(cause, _UNREACHABLE):
            endpoint = self._client.meta.endpoint_url
            return StorageError(
                f"{where}: cannot reach S3 endpoint {endpoint} ({type(cause).__name__}); "
                "check AWS_ENDPOINT_URL and the network"
            )
        if isinstance(cause, bx.NoCredentialsError):
            return StorageError(f"{where}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(cause, bx.BotoCoreError):
            return StorageError(f"{where}: {action} failed: {cause}")
        return StorageError(f"{where}: {action} failed: {type(cause).__name__}: {cause}")

    def _verify(self, key: str, data_digest: str, metadata: dict) -> None:
        expected = metadata.get(DIGEST_KEY)
        if expected is None:
            log.debug("%s/%s has no sha256 metadata; relying on the S3 checksum", self.uri, key)
        elif expected != data_digest:
            raise IntegrityError(
                f"{self.uri}/{key}: integrity check failed (sha256 {data_digest[:12]}… "
                f"!= stored {expected[:12]}…); the object is corrupt"
            )

    def _upload(self, fileobj: BinaryIO, key: str, digest: str) -> None:
        extra: dict[str, Any] = {"Metadata": {DIGEST_KEY: digest}}
        if self._checksum:
            extra["ChecksumAlgorithm"] = self._checksum
        try:
            self._client.upload_fileobj(fileobj, self.bucket, self._key(key), ExtraArgs=extra, Config=self._transfer)
        except (bx.BotoCoreError, bx.ClientError, boto3.exceptions.Boto3Error) as exc:
            raise self._error(exc, key, "upload") from None

    # -- Store protocol --------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        """Upload ``data`` to ``key`` (multipart when large), with its SHA-256 in the metadata."""
        self._upload(io.BytesIO(data), key, hashlib.sha256(data).hexdigest())

    def put_file(self, src: Path, key: str) -> None:
        """Upload the local file ``src`` to ``key`` (multipart when large)."""
        src = Path(src)
        digest = file_sha256(src)
        with open(src, "rb") as fh:
            self._upload(fh, key, digest)

    def read_bytes(self, key: str) -> bytes:
        """Download ``key``; raises StorageError if missing or if its SHA-256 does not match."""
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
            data = resp["Body"].read()
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "read") from None
        self._verify(key, hashlib.sha256(data).hexdigest(), resp.get("Metadata", {}))
        return data

    @contextlib.contextmanager
    def open_stream(self, key: str) -> Iterator[BinaryIO]:
        """``key`` as a binary stream read over the network as it is consumed (nothing stored).

        The caller checks what it read (a streamed shard's SHA-256 against its index).
        """
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "read") from None
        try:
            yield body
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "read") from None
        finally:
            body.close()

    def get_file(self, key: str, dest: Path) -> None:
        """Download ``key`` to ``dest`` atomically; ``dest`` appears only if the digest matches."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "read") from None
        with atomic_path(dest) as tmp:
            try:
                # An object replaced meanwhile cannot slip through: its digest differs from the HEAD's.
                self._client.download_file(
                    self.bucket, self._key(key), str(tmp), ExtraArgs={"ChecksumMode": "ENABLED"}, Config=self._transfer
                )
            except (bx.BotoCoreError, bx.ClientError, boto3.exceptions.Boto3Error) as exc:
                raise self._error(exc, key, "download") from None
            self._verify(key, file_sha256(tmp), head.get("Metadata", {}))

    def exists(self, key: str) -> bool:
        """True if ``key`` exists; a missing bucket raises instead of answering False."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except bx.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _MISSING_CODES:
                raise self._error(exc, key, "exists") from None
        except bx.BotoCoreError as exc:
            raise self._error(exc, key, "exists") from None
        if not self._bucket_checked:  # HEAD cannot tell a missing key from a missing bucket
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except (bx.BotoCoreError, bx.ClientError) as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if str(code) in ("404", "NoSuchBucket"):
                    raise StorageError(f"{self.uri}: bucket {self.bucket!r} does not exist") from None
                raise self._error(exc, None, "exists") from None
            self._bucket_checked = True
        return False

    def list_objects(self, prefix: str = "") -> list[tuple[str, int, str]]:
        """Sorted ``(key, size, ETag)`` of the objects (keys relative to the store) under ``prefix``; paginated."""
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[tuple[str, int, str]] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self._page_size}
            )
            for page in pages:
                # skip "directory" marker objects some tools create
                found.extend(
                    (obj["Key"][strip:], int(obj.get("Size", 0)), str(obj.get("ETag", "")).strip('"'))
                    for obj in page.get("Contents", [])
                    if not obj["Key"].endswith("/")
                )
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, None, "list") from None
        return sorted(found)

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys (relative to the store) that start with ``prefix``; follows pagination."""
        return [key for key, _, _ in self.list_objects(prefix)]

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "delete") from None
