"""kubeclr.storage.s3.S3Store against a real SeaweedFS: round trips, integrity, clear errors, faults."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import torch
from servers import SECRET_KEY, free_port

from kubeclr.core import checkpoint
from kubeclr.errors import StorageError
from kubeclr.storage.s3 import S3Store
from kubeclr.storage.store import open_store, parent_and_key

pytestmark = pytest.mark.integration

MiB = 2**20


def _head(s3_server, key):
    return s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)


def test_seaweed_has_room_for_many_buckets(seaweed):
    """Each test takes a fresh bucket (a SeaweedFS collection with its own volumes): the
    session server must accept writes to far more buckets than one test session creates,
    whatever the free disk space of the machine (CI once ran out at the 11th bucket)."""
    client = seaweed.client()
    names = [f"kubeclr-room-{os.getpid()}-{i:02d}" for i in range(32)]
    try:
        for name in names:
            client.create_bucket(Bucket=name)
            client.put_object(Bucket=name, Key="k", Body=b"x")
        assert all(client.get_object(Bucket=n, Key="k")["Body"].read() == b"x" for n in names)
    finally:
        for name in names:
            try:
                client.delete_object(Bucket=name, Key="k")
                client.delete_bucket(Bucket=name)
            except Exception:
                pass


def test_small_round_trip_bytes_and_files(s3_server, tmp_path):
    store = open_store(s3_server.uri("runs/a"))
    assert isinstance(store, S3Store) and store.uri == s3_server.uri("runs/a")
    store.write_bytes("x/hello.txt", b"hello")
    assert store.read_bytes("x/hello.txt") == b"hello"
    head = _head(s3_server, "runs/a/x/hello.txt")  # keys live under the store's prefix
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"hello").hexdigest()

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(12345))
    store.put_file(src, "files/src.bin")
    dest = tmp_path / "out" / "dest.bin"
    store.get_file("files/src.bin", dest)
    assert dest.read_bytes() == src.read_bytes()

    parent, key = parent_and_key(s3_server.uri("runs/a/x/hello.txt"))
    assert key == "hello.txt" and parent.read_bytes(key) == b"hello"


def test_multipart_round_trip(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECLR_S3_MULTIPART_MB", "5")
    store = open_store(s3_server.uri("big"))
    data = os.urandom(11 * MiB + 17)  # three parts of 5 MiB
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.put_file(src, "file.bin")
    store.write_bytes("bytes.bin", data)
    for key in ("file.bin", "bytes.bin"):
        head = _head(s3_server, f"big/{key}")
        assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # really uploaded in 3 parts
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    dest = tmp_path / "back.bin"
    store.get_file("file.bin", dest)
    assert dest.read_bytes() == data
    assert store.read_bytes("bytes.bin") == data


def test_list_exists_delete_with_pagination(s3_server):
    store = S3Store(s3_server.uri("run"), page_size=2)
    keys = ["a/1", "a/2", "a/3", "b/1", "c"]
    for key in keys:
        store.write_bytes(key, key.encode())
    open_store(s3_server.uri("run2")).write_bytes("a/9", b"sibling prefix, not ours")
    assert store.list() == keys  # 3 pages of 2
    assert store.list("a/") == ["a/1", "a/2", "a/3"]
    assert store.exists("a/2") and not store.exists("a/4")
    store.delete("a/2")
    store.delete("a/2")  # idempotent
    assert not store.exists("a/2")
    assert store.list("a/") == ["a/1", "a/3"]
    assert open_store(s3_server.uri("nothing-here")).list() == []


def test_corrupted_object_fails_integrity_check(s3_server, tmp_path):
    store = open_store(s3_server.uri("c"))
    store.write_bytes("state.pt", b"original bytes")
    meta = _head(s3_server, "c/state.pt")["Metadata"]
    # Tamper: new bytes, old metadata (the server's own checksum is recomputed and matches).
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="c/state.pt", Body=b"tampered bytes", Metadata=meta)
    with pytest.raises(StorageError, match=r"c/state\.pt: integrity check failed") as info:
        store.read_bytes("state.pt")
    assert "\n" not in str(info.value) and s3_server.uri("c/state.pt") in str(info.value)
    dest = tmp_path / "state.pt"
    with pytest.raises(StorageError, match="integrity check failed"):
        store.get_file("state.pt", dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_objects_from_other_tools_are_read_without_digest(s3_server):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="mirror/cifar.tar.gz", Body=b"tarball")
    assert open_store(s3_server.uri("mirror")).read_bytes("cifar.tar.gz") == b"tarball"


def test_missing_object(s3_server, tmp_path):
    store = open_store(s3_server.uri("p"))
    with pytest.raises(StorageError, match=r"p/nope: no such object$"):
        store.read_bytes("nope")
    with pytest.raises(StorageError, match="no such object"):
        store.get_file("nope", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    assert store.exists("nope") is False


def test_missing_bucket_is_one_clear_line(s3_server):
    store = open_store("s3://no-such-bucket-kubeclr/prefix")
    for call in (
        lambda: store.write_bytes("k", b"1"),
        lambda: store.read_bytes("k"),
        lambda: store.list(),
        lambda: store.exists("k"),
    ):
        with pytest.raises(
            StorageError,
            match=r"^s3://no-such-bucket-kubeclr/prefix.*: bucket "
            r"'no-such-bucket-kubeclr' does not exist$",
        ):
            call()


@pytest.mark.parametrize(
    "var, value", [("AWS_SECRET_ACCESS_KEY", "wrong-secret-value"), ("AWS_ACCESS_KEY_ID", "no-such-access-key")]
)
def test_wrong_credentials_is_one_clear_line(s3_server, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    store = open_store(s3_server.uri("p"))
    for call in (lambda: store.write_bytes("k", b"1"), lambda: store.read_bytes("k"), lambda: store.list()):
        with pytest.raises(StorageError, match=r": access denied \(") as info:
            call()
        message = str(info.value)
        assert "\n" not in message and value not in message and SECRET_KEY not in message


def test_unreachable_endpoint_is_one_clear_line(monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("KUBECLR_S3_MAX_ATTEMPTS", "2")
    store = open_store("s3://bucket/prefix")
    for call in (lambda: store.write_bytes("k", b"1"), lambda: store.read_bytes("k"), lambda: store.exists("k")):
        with pytest.raises(StorageError, match=rf"cannot reach S3 endpoint http://127.0.0.1:{port} ") as info:
            call()
        assert "\n" not in str(info.value)


def test_bad_uris():
    with pytest.raises(StorageError, match="missing bucket name"):
        open_store("s3:///key")


def test_server_stopped_during_uploads(s3_server, monkeypatch):
    """Stop SeaweedFS mid-sequence, start it again: each write completes or raises StorageError."""
    monkeypatch.setenv("KUBECLR_S3_MAX_ATTEMPTS", "3")
    store = open_store(s3_server.uri("fault"))
    blobs = {f"obj-{i:02d}": os.urandom(64 * 1024) for i in range(24)}
    done, failed = [], []

    def bounce():
        time.sleep(0.3)
        s3_server.server.stop()
        time.sleep(1.0)
        s3_server.server.start()

    thread = threading.Thread(target=bounce)
    thread.start()
    for key, data in blobs.items():
        try:
            store.write_bytes(key, data)
            done.append(key)
        except StorageError as exc:
            assert "\n" not in str(exc) and s3_server.uri("fault") in str(exc)
            failed.append(key)
        time.sleep(0.1)
    thread.join()
    assert len(done) + len(failed) == len(blobs) and done
    print(f"fault: {len(done)} written, {len(failed)} failed clearly")
    for key in done:  # whatever was acknowledged is there, intact
        assert store.read_bytes(key) == blobs[key]


class _StopAfter:
    """A Store wrapper that stops the S3 server right after one particular key is written."""

    def __init__(self, store, key, server):
        self._store, self._key, self._server = store, key, server
        self.uri = store.uri

    def write_bytes(self, key, data):
        self._store.write_bytes(key, data)
        if key == self._key:
            self._server.stop()  # the 'pod' dies between state.pt and MANIFEST.json

    def __getattr__(self, name):
        return getattr(self._store, name)


def _load_when_back(uri: str, timeout: float = 60.0):
    """load_latest once the restarted server serves reads again.

    Right after a restart SeaweedFS may answer reads with InternalError while its
    volumes come back; load_latest must then fail (a transient error is not a
    corrupt checkpoint: skipping it would silently resume from an older one),
    and succeed once the store is healthy.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return checkpoint.load_latest(open_store(uri))
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_checkpoint_series_never_resumes_from_partial(s3_server, monkeypatch):
    monkeypatch.setenv("KUBECLR_S3_MAX_ATTEMPTS", "2")
    uri = s3_server.uri("ckpt")
    store = open_store(uri)
    states = {e: {"epoch": e, "step": 10 * e, "w": torch.full((4,), float(e))} for e in range(1, 5)}
    checkpoint.save_checkpoint(store, 1, states[1])
    checkpoint.save_checkpoint(store, 2, states[2])

    killer = _StopAfter(store, "ckpt-000003/state.pt", s3_server.server)
    with pytest.raises(StorageError, match="cannot reach S3 endpoint"):
        checkpoint.save_checkpoint(killer, 3, states[3])
    s3_server.server.start()

    assert "ckpt-000003/state.pt" in store.list()  # the fragment is there …
    epoch, state = _load_when_back(uri)  # … but never resumed from
    assert epoch == 2 and torch.equal(state["w"], states[2]["w"])

    # The retried pod resumes from epoch 2 and writes 3 and 4.
    checkpoint.save_checkpoint(store, 3, states[3])
    checkpoint.save_checkpoint(store, 4, states[4])
    epoch, state = checkpoint.load_latest(open_store(uri))
    assert epoch == 4 and state["step"] == 40 and torch.equal(state["w"], states[4]["w"])


def test_corrupt_newest_checkpoint_falls_back(s3_server):
    uri = s3_server.uri("ckpt2")
    store = open_store(uri)
    checkpoint.save_checkpoint(store, 1, {"w": torch.ones(3)})
    checkpoint.save_checkpoint(store, 2, {"w": torch.zeros(3)})
    key = "ckpt2/ckpt-000002/state.pt"
    meta = _head(s3_server, key)["Metadata"]
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=b"garbage", Metadata=meta)
    epoch, state = checkpoint.load_latest(open_store(uri))
    assert epoch == 1 and torch.equal(state["w"], torch.ones(3))
