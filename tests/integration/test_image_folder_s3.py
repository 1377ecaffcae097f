"""Image folders from an s3:// prefix on a real SeaweedFS: paginated listing, concurrent download,
the fingerprint that keys the data step's cache, and the refusals (an empty prefix, an escaping key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeclr.config import Config
from kubeclr.data.files import load_split
from kubeclr.errors import DataError
from kubeclr.steps.download_split import run as download_split
from kubeclr.storage.fingerprint import source_fingerprint
from kubeclr.storage.folders import download_prefix
from tests.dataset_fixtures import write_image_folder


def _upload(s3, root: Path, prefix: str) -> int:
    client = s3.client()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{p.relative_to(root).as_posix()}", Body=p.read_bytes())
    return len(files)


def _cfg(uri: str, **extra) -> Config:
    return Config().override({"data.format": "imagefolder", "data.source": uri, "data.image_size": 16, **extra})


def test_a_prefix_is_listed_across_pages_downloaded_and_split(s3_server, tmp_path, monkeypatch):
    write_image_folder(tmp_path / "src", train=6, test=3, unlabeled=4)
    n = _upload(s3_server, tmp_path / "src", "datasets/pets")
    from kubeclr.storage.s3 import S3Store

    monkeypatch.setitem(S3Store.__init__.__kwdefaults__, "page_size", 7)  # 7 keys a page: 5 pages
    outs = [tmp_path / "out" / f"{s}.npz" for s in ("train", "val", "test")]
    result = download_split(_cfg(s3_server.uri("datasets/pets/")), *outs, tmp_path / "out" / "manifest.json")
    assert result["train_size"] + result["val_size"] + result["test_size"] + result["unlabeled_size"] == n == 31
    assert load_split(outs[0]).class_names == ("cat", "dog", "emu")
    assert result["source"] == s3_server.uri("datasets/pets/")


def test_the_fingerprint_changes_exactly_when_an_object_changes(s3_server, tmp_path):
    write_image_folder(tmp_path / "src", train=2, test=1)
    _upload(s3_server, tmp_path / "src", "ds")
    data = _cfg(s3_server.uri("ds")).data
    first = source_fingerprint(data)
    assert source_fingerprint(data) == first  # same content: the data step is a cache hit
    key = "ds/train/cat/cat-000.jpg"
    client = s3_server.client()
    body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    assert source_fingerprint(data) != first  # one changed byte: a cache miss
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=body)
    assert source_fingerprint(data) == first


def test_an_empty_prefix_is_one_clear_line(s3_server, tmp_path):
    outs = [tmp_path / f"{s}.npz" for s in ("train", "val", "test")]
    with pytest.raises(DataError, match=r"no objects under this prefix \(an image folder needs images: train/<class>/"):
        download_split(_cfg(s3_server.uri("nothing-here/")), *outs)
    assert not any(tmp_path.iterdir())


def test_a_prefix_without_images_is_refused_by_layout(s3_server, tmp_path):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="docs/README.txt", Body=b"hello")
    outs = [tmp_path / f"{s}.npz" for s in ("train", "val", "test")]
    # without train/ it is a folder without labels: one file is too few (and not an image)
    with pytest.raises(DataError, match=r"no labels and only 1 image\(s\) \(README.txt\); at least 4 images needed"):
        download_split(_cfg(s3_server.uri("docs")), *outs)


def test_an_oversized_object_is_refused_before_download(s3_server, tmp_path):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="big/train/a/huge.png", Body=b"\0" * 5000)
    with pytest.raises(DataError, match=r"big/train/a/huge.png: 5000 bytes, more than data.max_image_bytes=1000"):
        download_prefix(s3_server.uri("big"), tmp_path / "d", max_bytes=1000)
    assert not (tmp_path / "d").exists()
