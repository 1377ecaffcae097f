"""kubeclr.storage.store: URI parsing, LocalStore behaviour and the S3 dispatch (no server needed)."""

from __future__ import annotations

import pytest

from kubeclr.errors import StorageError, UserError
from kubeclr.storage.store import LocalStore, open_store, parent_and_key
from kubeclr.uri import split_uri


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("s3://bucket/a/b", ("s3", "bucket/a/b")),
        ("file:///tmp/x", ("file", "/tmp/x")),
        ("file://localhost/tmp/x%20y", ("file", "/tmp/x y")),
        ("relative/dir", ("file", "relative/dir")),
    ],
)
def test_split_uri(uri, expected):
    assert split_uri(uri) == expected


@pytest.mark.parametrize("uri, match", [("gs://bucket/x", "unsupported scheme"), ("file://host/x", "must be absolute")])
def test_split_uri_rejects(uri, match):
    with pytest.raises(StorageError, match=match):
        split_uri(uri)


def test_local_round_trip_list_exists_delete(tmp_path):
    store = open_store(tmp_path.as_uri() + "/root")
    assert isinstance(store, LocalStore) and store.uri == (tmp_path / "root").as_uri()
    assert store.list() == []  # the root need not exist yet
    store.write_bytes("a/1.bin", b"one")
    store.write_bytes("a/2.bin", b"two")
    store.write_bytes("b.txt", b"bee")
    assert store.read_bytes("a/2.bin") == b"two"
    assert store.list() == ["a/1.bin", "a/2.bin", "b.txt"]
    assert store.list("a/") == ["a/1.bin", "a/2.bin"]
    assert store.exists("b.txt") and not store.exists("c.txt")
    store.delete("a/1.bin")
    store.delete("a/1.bin")  # idempotent
    assert store.list("a/") == ["a/2.bin"]

    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    store.put_file(src, "files/src.bin")
    dest = tmp_path / "out" / "dest.bin"
    store.get_file("files/src.bin", dest)
    assert dest.read_bytes() == src.read_bytes()


def test_local_writes_leave_no_temporaries(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("k", b"v1")
    store.write_bytes("k", b"v2")  # overwrite by rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"] and store.read_bytes("k") == b"v2"


def test_local_missing_and_escaping_keys(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match=r"/nope: no such object$"):
        store.read_bytes("nope")
    with pytest.raises(StorageError, match="no such object"):
        store.get_file("nope", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    with pytest.raises(StorageError, match="escapes the store"):
        store.write_bytes("../outside", b"x")
    assert not (tmp_path.parent / "outside").exists()


def test_parent_and_key(tmp_path):
    (tmp_path / "f.json").write_text("{}")
    store, key = parent_and_key(str(tmp_path / "f.json"))
    assert key == "f.json" and store.read_bytes(key) == b"{}"
    with pytest.raises(StorageError, match="expected a URI of an object"):
        parent_and_key("s3://bucket")
    root, name = parent_and_key("file:///cifar-10-python.tar.gz")  # an object at the filesystem root
    assert (str(root.root), name) == ("/", "cifar-10-python.tar.gz")


def test_s3_uris_open_the_s3_store_without_network(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    store = open_store("s3://bucket/some/prefix/")
    assert (store.bucket, store.prefix, store.uri) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    client = store._client
    assert client.meta.region_name == "us-east-1"  # the default when none is configured
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.retries["mode"] == "adaptive"
    store2, key = parent_and_key("s3://bucket/dir/obj.tar.gz")
    assert (store2.uri, key) == ("s3://bucket/dir", "obj.tar.gz")
    with pytest.raises(StorageError, match="invalid key"):
        store.write_bytes("../x", b"")


def test_s3_settings_errors_are_user_errors(monkeypatch):
    monkeypatch.setenv("KUBECLR_S3_ADDRESSING", "sideways")
    with pytest.raises(UserError, match="KUBECLR_S3_ADDRESSING='sideways'"):
        open_store("s3://bucket/x")
    monkeypatch.setenv("KUBECLR_S3_ADDRESSING", "virtual")
    monkeypatch.setenv("KUBECLR_S3_MAX_ATTEMPTS", "many")
    with pytest.raises(UserError, match="KUBECLR_S3_MAX_ATTEMPTS='many'"):
        open_store("s3://bucket/x")


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("https://user:secret@host/c.tar.gz?X-Amz-Signature=abc", "https://***@host/c.tar.gz?…"),
        ("https://host/c.tar.gz", "https://host/c.tar.gz"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("sample", "sample"),
        ("/data/c.tar.gz", "/data/c.tar.gz"),
    ],
)
def test_redact_uri_hides_credentials(uri, shown):
    from kubeclr.uri import redact_uri

    assert redact_uri(uri) == shown


def test_download_errors_never_show_credentials(tmp_path):
    from kubeclr.config import load_config
    from kubeclr.errors import DataError
    from kubeclr.steps.download_split import run as download_split

    cfg = load_config(
        "smoke",
        overrides=[
            "data.source=http://user:s3cret@127.0.0.1:9/c.tar.gz?sig=t0ken",
            "data.md5=none",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
    )
    with pytest.raises(DataError) as err:
        download_split(cfg, tmp_path / "t.npz", tmp_path / "v.npz", tmp_path / "s.npz")
    assert "127.0.0.1" in str(err.value)
    assert "s3cret" not in str(err.value) and "t0ken" not in str(err.value)
