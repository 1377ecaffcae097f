"""WebDataset shards read into splits: tars built by hand here (not by our writer), good and hostile."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubeclr.config import Config
from kubeclr.data.formats import read_shards
from kubeclr.data.shards import sample_key
from kubeclr.errors import DataError


def _png(value: int, side: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (value, 255 - value, 7)).save(buf, format="PNG")
    return buf.getvalue()


def _noise_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]], *, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _samples(prefix: str, values: list[int], labels: list[int] | None) -> list[tuple[str, bytes]]:
    out = []
    for i, v in enumerate(values):
        out.append((f"{prefix}/{i:05d}.png", _png(v)))
        if labels is not None:
            out.append((f"{prefix}/{i:05d}.cls", str(labels[i]).encode()))
    return out


def _cfg(**data) -> Config:
    base = {"data.format": "webdataset", "data.source": "/unused", "data.image_size": 8, "data.md5": "none"}
    return Config().override({**base, **{f"data.{k}": v for k, v in data.items()}})


def _labelled(root: Path, *, classes: bool = True) -> Path:
    root.mkdir()
    values = list(range(0, 200, 5))  # 40 images, each its own red value
    labels = [i % 4 for i in range(40)]
    _tar(root / "train-000000.tar", _samples("train", values[:20], labels[:20]))
    _tar(root / "train-000001.tar", _samples("train2", values[20:30], labels[20:30]))
    _tar(root / "test-000000.tar", _samples("test", values[30:], labels[30:]))
    if classes:
        (root / "classes.txt").write_text("cat\ndog\nfox\nowl\n")
    return root


def test_sample_keys_follow_webdataset():
    assert sample_key("train/000123.png") == ("train/000123", "png")
    assert sample_key("a.b.CLS") == ("a", "b.cls")
    assert sample_key("dir.x/k.jpg") == ("dir.x/k", "jpg")
    assert sample_key("noext") == ("noext", "")


def test_labelled_shards_read_like_every_other_format(tmp_path):
    root = _labelled(tmp_path / "shards")
    splits = read_shards(_cfg().data, root, "shards")
    assert splits.class_names == ("cat", "dog", "fox", "owl")
    assert len(splits.train.labels) + len(splits.val.labels) == 30 and len(splits.test.labels) == 10
    assert len(splits.val.labels) == 6  # the stratified val_fraction 0.2 of train
    red = sorted(int(v) for v in np.concatenate([splits.train.images[:, 0, 0, 0], splits.val.images[:, 0, 0, 0]]))
    assert red == list(range(0, 150, 5))  # every train image once, decoded to its own colour
    assert splits.test.images[:, 0, 0, 0].tolist() == list(range(150, 200, 5))  # in shard order
    assert splits.test.labels.tolist() == [i % 4 for i in range(30, 40)]
    assert set(splits.manifest) == {"train-000000.tar", "train-000001.tar", "test-000000.tar"}
    assert splits.unlabeled.shape == (0, 3, 8, 8) and splits.skipped == []
    no_names = read_shards(_cfg().data, _labelled(tmp_path / "bare", classes=False), "bare")
    assert no_names.class_names == ("0", "1", "2", "3")  # without classes.txt: the indices


def test_val_shards_and_unlabelled_shards(tmp_path):
    root = _labelled(tmp_path / "shards")
    _tar(root / "val-000000.tar", _samples("val", [3, 4, 5, 6], [0, 1, 2, 3]))
    _tar(root / "unlabeled-000000.tar", _samples("u", [9] * 5, None))
    splits = read_shards(_cfg().data, root, "shards")
    assert len(splits.val.labels) == 4 and len(splits.train.labels) == 30 and len(splits.unlabeled) == 5


def test_unlabelled_shards_alone_are_a_dataset_without_labels(tmp_path):
    root = tmp_path / "shards"
    root.mkdir()
    _tar(root / "unlabeled-000000.tar", _samples("u", list(range(0, 250, 2)), None))  # 125 images
    splits = read_shards(_cfg().data, root, "shards")
    assert splits.class_names == () and len(splits.train.labels) == 0 and len(splits.val.labels) == 0
    assert len(splits.test.labels) == 62 and (splits.test.labels == -1).all() and len(splits.unlabeled) == 63
    seen = sorted(splits.test.images[:, 0, 0, 0].tolist() + splits.unlabeled[:, 0, 0, 0].tolist())
    assert seen == list(range(0, 250, 2))  # held out and pretraining images: disjoint, every one


def _one_bad(tmp_path: Path, members: list[tuple[str, bytes]], links=None) -> Path:
    root = _labelled(tmp_path / "shards")
    _tar(root / "train-000009.tar", _samples("good", [1, 2], [0, 1]) + members, links=links)
    return root


@pytest.mark.parametrize(
    "members, links, message",
    [
        ([], {"bad/00001.png": "/etc/passwd"}, "member bad/00001.png: not a regular file"),
        ([("bad/00001.cls", b"1")], None, "key bad/00001: no image"),
        ([("bad/00001.png", _png(1)), ("bad/00001.jpg", _png(2))], None, "key bad/00001: 2 images"),
        ([("bad/00001.png", _png(1)), ("bad/00001.cls", b"dog")], None, "cls is 'dog', not a class index"),
        ([("bad/00001.png", _png(1)), ("bad/00001.cls", b"7")], None, "class index 7, but classes.txt names 4"),
        ([("bad/00001.png", _png(1))], None, "key bad/00001: no cls member"),
        ([("bad/00001.png", b"\x89PNG not really"), ("bad/00001.cls", b"1")], None, "train-000009.tar:bad/00001"),
        ([("../../escape/00001.png", _png(1)), ("../../escape/00001.cls", b"1")], None, None),  # never extracted
    ],
)
def test_a_bad_sample_is_refused_by_shard_and_key_or_skipped(tmp_path, members, links, message):
    root = _one_bad(tmp_path, members, links)
    if message is None:  # a name outside any folder is only a key: it is read, never written anywhere
        assert len(read_shards(_cfg().data, root, "shards").train.labels) > 0
        assert not (tmp_path.parent / "escape").exists()
        return
    with pytest.raises(DataError, match="train-000009.tar") as err:
        read_shards(_cfg().data, root, "shards")
    assert message in str(err.value) and "\n" not in str(err.value)
    skipped = read_shards(_cfg(on_bad_image="skip").data, root, "shards")
    assert len(skipped.skipped) == 1 and message in skipped.skipped[0]
    assert len(skipped.train.labels) + len(skipped.val.labels) == 32  # the good ones, the bad one left out


def test_bounds_apply_before_decoding(tmp_path):
    root = _one_bad(tmp_path, [("big/00001.png", _noise_png(64)), ("big/00001.cls", b"1")])
    with pytest.raises(DataError, match=r"member big/00001.png: \d+ bytes, more than data.max_image_bytes=200"):
        read_shards(_cfg(max_image_bytes=200).data, root, "shards")
    with pytest.raises(DataError, match="more than data.max_image_pixels=100"):
        read_shards(_cfg(max_image_pixels=100).data, root, "shards")


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no shards (expected train-*.tar and test-*.tar"),
        ({"train-0.tar": True}, "train-*.tar but no test-*.tar shards"),
        ({"test-0.tar": True}, "test-*.tar but no train-*.tar shards"),
        ({"train-0.tar": True, "test-0.tar": b"not a tar at all"}, "shard test-0.tar: not a readable tar file"),
    ],
)
def test_shard_sets_that_are_not_a_dataset(tmp_path, layout, message):
    root = tmp_path / "shards"
    root.mkdir()
    (root / "notes.txt").write_text("ignored")
    for name, content in layout.items():
        if content is True:
            _tar(root / name, _samples(name[:4], [1, 2, 3], [0, 1, 0]))
        else:
            (root / name).write_bytes(content)
    with pytest.raises(DataError, match=message.replace("*", r"\*").replace("(", r"\(")):
        read_shards(_cfg().data, root, "shards")


def test_a_key_split_across_the_shard_is_refused(tmp_path):
    members = [("a/1.png", _png(1)), ("a/1.cls", b"0"), ("a/2.png", _png(2)), ("a/2.cls", b"0"), ("a/1.cls", b"1")]
    root = _one_bad(tmp_path, members)
    with pytest.raises(DataError, match="key a/1 appears twice, apart"):
        read_shards(_cfg().data, root, "shards")


def test_shards_need_a_source_of_their_own():
    from kubeclr.config import check_folder_source
    from kubeclr.errors import ConfigError

    for source, said in (("sample", "there is no sample in shards"), (Config().data.source, "needs data.source")):
        cfg = Config().override({"data.format": "webdataset", "data.source": source})
        with pytest.raises(ConfigError, match=said):
            check_folder_source(cfg.data)


def test_hidden_members_are_ignored_as_in_image_folders(tmp_path):
    members = [("m/._00001.png", b"AppleDouble"), ("m/.DS_Store", b"x"), ("__MACOSX/m/a.png", b"y")]
    root = _one_bad(tmp_path, members)
    assert read_shards(_cfg().data, root, "shards").skipped == []


def test_an_oversized_cls_is_refused_or_skipped_and_large_indices_need_names(tmp_path):
    root = _one_bad(tmp_path, [("c/1.png", _png(1)), ("c/1.cls", b"1" * 100)])
    with pytest.raises(DataError, match="member c/1.cls: 100 bytes; a class index is a few digits"):
        read_shards(_cfg().data, root, "shards")
    assert len(read_shards(_cfg(on_bad_image="skip").data, root, "shards").skipped) == 1
    bare = _labelled(tmp_path / "bare", classes=False)
    _tar(bare / "train-000009.tar", _samples("big", [1], [99_999_999]))
    with pytest.raises(DataError, match="class index 99999999 without classes.txt"):
        read_shards(_cfg().data, bare, "bare")


def test_limits_and_links(tmp_path):
    root = tmp_path / "shards"
    root.mkdir()
    _tar(root / "unlabeled-000000.tar", _samples("u", list(range(0, 250, 2)), None))
    limited = read_shards(_cfg(unlabeled_limit=10, test_limit=5).data, root, "shards")
    assert len(limited.unlabeled) == 10 and len(limited.test.labels) == 5
    (root / "unlabeled-000001.tar").symlink_to(root / "unlabeled-000000.tar")
    with pytest.raises(DataError, match="unlabeled-000001.tar in .* is a symbolic link"):
        read_shards(_cfg().data, root, "shards")
