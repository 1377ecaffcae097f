"""Datasets without labels: an ``unlabeled/``-only folder, a flat folder of images, STL-10's unlabelled file alone.

The contract every one of them ends in: ``class_names == ()``, empty train and val, a seeded held-out
test slice (labels -1) for label-free evaluation and every other image as the unlabelled pretraining
images. Oracles: each image is a solid colour whose red value is its file's index, so a decoded image
names the file it came from; STL-10 rows are compared with the arrays the fixture wrote.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from kubeclr.config import Config
from kubeclr.data.cifar import pack_tarball
from kubeclr.data.files import read_split
from kubeclr.data.folder import UNLABELED, scan_folder
from kubeclr.data.formats import Splits, held_out_count, read_image_folder, read_tarball
from kubeclr.errors import DataError
from kubeclr.steps.compute_stats import run as compute_stats
from kubeclr.steps.download_split import run as download_split
from tests.dataset_fixtures import (
    FOLDER_CLASSES,
    make_stl10_unlabelled_tarball,
    stl10_bytes,
    stl10_images,
    write_coded_images,
    write_image_folder,
)

SIZE = 16


def _data(**values):
    values = {"format": "imagefolder", "image_size": SIZE, "workers": 1, **values}
    return Config().override({f"data.{k}": v for k, v in values.items()}).data


def _codes(images: np.ndarray) -> list[int]:
    """The file index each decoded coded image shows (its red value)."""
    assert (images == images[:, :, :1, :1]).all(), "a coded image is one solid colour"
    return [int(v) for v in images[:, 0, 0, 0]]


def _assert_contract(splits: Splits, n: int, held: int, unlabeled: int) -> None:
    assert splits.class_names == ()
    for name in ("train", "val"):
        batch = getattr(splits, name)
        assert batch.images.shape == (0, 3, SIZE, SIZE) and batch.images.dtype == np.uint8, name
        assert batch.labels.shape == (0,) and batch.labels.dtype == np.int64, name
    assert splits.test.images.shape == (held, 3, SIZE, SIZE) and splits.test.images.dtype == np.uint8
    assert splits.test.labels.dtype == np.int64 and (splits.test.labels == -1).all() and len(splits.test.labels) == held
    assert splits.unlabeled.shape == (unlabeled, 3, SIZE, SIZE) and splits.unlabeled.dtype == np.uint8


def _layout(root, kind: str, n: int) -> tuple[dict[str, int], str]:
    """Write ``n`` coded images in one of the layouts without labels; returns ``(codes, the path prefix)``."""
    if kind == "unlabeled":
        names, prefix = [f"unlabeled/u{k:03d}.png" for k in range(n)], "unlabeled/"
    elif kind == "wrapped unlabeled":
        names, prefix = [f"mydata/unlabeled/u{k:03d}.png" for k in range(n)], "unlabeled/"  # the wrapper looked through
    elif kind == "flat":
        names, prefix = [f"img{k:03d}.png" for k in range(n)], ""
    elif kind == "flat with sub-folders":  # at the root, one and two levels down
        names, prefix = [("", "a/", "b/c/")[k % 3] + f"img{k:03d}.png" for k in range(n)], ""
    else:  # a flat folder wrapped in one folder: every file under it, the wrapper part of the path
        names, prefix = [f"photos/img{k:03d}.png" for k in range(n)], ""
    codes = write_coded_images(root, names)
    (root / ".DS_Store").write_bytes(b"not an image, hidden")
    return {name.removeprefix("mydata/"): code for name, code in codes.items()}, prefix


LAYOUTS = ["unlabeled", "wrapped unlabeled", "flat", "flat with sub-folders", "wrapped flat"]


# -- the contract ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LAYOUTS)
def test_a_folder_without_labels_holds_a_seeded_slice_out_and_pretrains_on_the_rest(tmp_path, kind, caplog):
    root = tmp_path / "ds"
    codes, prefix = _layout(root, kind, 20)
    layout = scan_folder(root, origin="ds")
    assert layout.class_names == () and set(layout.files) == {UNLABELED}
    assert layout.files[UNLABELED] == [(name, -1) for name in sorted(codes)]
    assert all(name.startswith(prefix) for name, _ in layout.files[UNLABELED])

    with caplog.at_level(logging.INFO, logger="kubeclr.data.formats"):
        splits = read_image_folder(_data(source=str(root)), root, "ds")
    held = held_out_count(20, 0.2)
    assert held == 10  # max(round(0.2 * 20), min(256, 20 // 2))
    _assert_contract(splits, 20, held=held, unlabeled=10)
    test, pretrain = _codes(splits.test.images), _codes(splits.unlabeled)
    assert not set(test) & set(pretrain) and sorted(test + pretrain) == list(range(20))
    assert set(splits.manifest) == set(codes) and not splits.skipped  # every image read, hidden files not
    assert "ds: no labels: 20 images, 10 held out for label-free evaluation" in caplog.text


def test_the_held_out_slice_is_seeded(tmp_path):
    root = tmp_path / "ds"
    write_coded_images(root, [f"i{k:03d}.png" for k in range(40)])
    first, again = (read_image_folder(_data(source=str(root), seed=3), root, "ds") for _ in range(2))
    other = read_image_folder(_data(source=str(root), seed=4), root, "ds")
    assert _codes(first.test.images) == _codes(again.test.images)
    assert _codes(first.unlabeled) == _codes(again.unlabeled)
    assert set(_codes(first.test.images)) != set(_codes(other.test.images))
    assert len(first.test.labels) == len(other.test.labels) == 20


@pytest.mark.parametrize(
    "n, fraction, held",
    [
        (4, 0.2, 2),
        (5, 0.2, 2),
        (4, 0.9, 3),
        (10, 0.9, 9),
        (1000, 0.2, 256),
        (5000, 0.2, 1000),
        (600, 0.1, 256),
        (100_000, 0.2, 2048),
    ],
)
def test_held_out_size(n, fraction, held):
    assert held_out_count(n, fraction) == held
    assert 1 <= held <= n - 1


def test_limits_apply_to_the_held_out_slice_and_the_pretraining_images(tmp_path):
    root = tmp_path / "ds"
    write_coded_images(root, [f"i{k:03d}.png" for k in range(30)])
    full = read_image_folder(_data(source=str(root)), root, "ds")
    limited = read_image_folder(_data(source=str(root), test_limit=3, unlabeled_limit=5), root, "ds")
    _assert_contract(limited, 30, held=3, unlabeled=5)
    assert set(_codes(limited.test.images)) <= set(_codes(full.test.images))  # a subset of the same slice
    assert set(_codes(limited.unlabeled)) <= set(_codes(full.unlabeled))  # never a held-out image
    assert len(limited.manifest) == 8  # only the chosen files were decoded


def test_bad_images_follow_on_bad_image(tmp_path):
    root = tmp_path / "ds"
    write_coded_images(root, [f"i{k:03d}.png" for k in range(12)])
    (root / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt: "):
        read_image_folder(_data(source=str(root)), root, "ds")
    splits = read_image_folder(_data(source=str(root), on_bad_image="skip"), root, "ds")
    assert len(splits.skipped) == 1 and len(splits.test.labels) + len(splits.unlabeled) == 12
    assert "notes.txt" in splits.manifest


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unlabeled", "flat"])
def test_fewer_than_four_images_is_one_clear_error(tmp_path, kind):
    root = tmp_path / "ds"
    _layout(root, kind, 3)
    with pytest.raises(DataError) as err:
        read_image_folder(_data(source=str(root)), root, "ds")
    message = str(err.value)
    assert message.startswith("ds: no labels and only 3 image(s) (") and "; at least 4 images needed" in message
    assert "002.png)" in message  # the files it found, named
    assert "\n" not in message


def test_a_folder_of_one_text_file_names_it(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "README.txt").write_text("hello")
    with pytest.raises(DataError, match=r"^ds: no labels and only 1 image\(s\) \(README.txt\); at least 4 images"):
        read_image_folder(_data(source=str(tmp_path / "ds")), tmp_path / "ds", "ds")


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda r: write_image_folder(r, train=0, test=2), "ds: test/ but no train/ folder"),
        (lambda r: write_image_folder(r, train=0, test=0, val=2), "ds: val/ but no train/ folder"),
        (lambda r: write_image_folder(r / "wrap", train=0, test=2, unlabeled=6), "ds: test/ but no train/ folder"),
        (lambda r: (r / "unlabeled").mkdir(parents=True), "ds: unlabeled/ holds no images"),
        (lambda r: r.mkdir(), "ds: not an image folder (no images; found nothing)"),
        (lambda r: (r / "empty" / "deeper").mkdir(parents=True), "ds: not an image folder (no images; found empty/)"),
        (lambda r: (r / "__MACOSX").mkdir(parents=True) or (r / ".x.png").write_bytes(b"x"), "found nothing"),
        (
            lambda r: write_coded_images(r, ["a.png"]) and (r / "link.png").symlink_to("/etc/passwd"),
            "ds: link.png is a symbolic link to outside the dataset",
        ),
        (
            lambda r: write_coded_images(r, ["a.png"]) and (r / "etc").symlink_to("/etc", target_is_directory=True),
            "ds: etc is a symbolic link to a folder",
        ),
        (
            lambda r: (
                write_coded_images(r, ["unlabeled/a.png"])
                and (r / "unlabeled" / "sub").symlink_to(r, target_is_directory=True)
            ),
            "ds: unlabeled/sub is a symbolic link to a folder",
        ),
    ],
)
def test_layouts_that_are_neither_are_refused_in_one_line(tmp_path, make, fragment):
    root = tmp_path / "ds"
    make(root)
    with pytest.raises(DataError) as err:
        scan_folder(root, origin="ds")
    assert fragment in str(err.value) and "\n" not in str(err.value)
    if "no train/" in fragment or "no images" in fragment:
        assert "unlabeled/<image> alone or images directly in the folder" in str(err.value)  # the hint says how


def test_the_dataset_folder_itself_may_be_a_link(tmp_path):
    write_coded_images(tmp_path / "real", [f"i{k}.png" for k in range(4)])
    (tmp_path / "ds").symlink_to(tmp_path / "real", target_is_directory=True)
    layout = scan_folder(tmp_path / "ds", origin="ds")
    assert [name for name, _ in layout.files[UNLABELED]] == [f"i{k}.png" for k in range(4)]


# -- labelled folders are as they were --------------------------------------------------


def test_a_labelled_folder_keeps_its_rules(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, train=3, test=2, unlabeled=4)
    write_coded_images(root, ["loose.png"])  # not part of the labelled layout: ignored, as before
    layout = scan_folder(root, origin="ds")
    assert layout.class_names == FOLDER_CLASSES and set(layout.files) == {"train", "test", UNLABELED}
    splits = read_image_folder(_data(source=str(root)), root, "ds")
    assert len(splits.test.labels) == 6 and set(splits.test.labels) == {0, 1, 2} and len(splits.unlabeled) == 4
    assert len(splits.train.labels) + len(splits.val.labels) == 9 and "loose.png" not in splits.manifest
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="ds: no test/ folder"):
        scan_folder(root, origin="ds")


# -- STL-10 ------------------------------------------------------------------------------


def _stl(tmp_path, **values):
    src = tmp_path / "stl10_binary.tar.gz"
    return src, Config().override({"data.format": "stl10", "data.source": str(src), "data.md5": "none"} | values).data


def _rows(images: np.ndarray, of: np.ndarray) -> list[int]:
    """Index in ``of`` of each image of ``images``."""
    keys = {im.tobytes(): k for k, im in enumerate(of)}
    return [keys[im.tobytes()] for im in images]


def test_stl10_with_only_its_unlabelled_file_is_a_dataset_without_labels(tmp_path, caplog):
    src, d = _stl(tmp_path)
    oracle = make_stl10_unlabelled_tarball(src, unlabeled=30)
    with caplog.at_level(logging.INFO, logger="kubeclr.data.formats"):
        splits = read_tarball(d, src, "stl")
    assert splits.class_names == () and splits.manifest == {}
    for name in ("train", "val"):
        batch = getattr(splits, name)
        assert batch.images.shape == (0, 3, 96, 96) and batch.images.dtype == np.uint8
        assert batch.labels.shape == (0,) and batch.labels.dtype == np.int64
    held = held_out_count(30, d.val_fraction)
    assert splits.test.images.shape == (held, 3, 96, 96) and (splits.test.labels == -1).all()
    assert splits.test.labels.dtype == np.int64 and splits.unlabeled.shape == (30 - held, 3, 96, 96)
    test, pretrain = _rows(splits.test.images, oracle), _rows(splits.unlabeled, oracle)
    assert not set(test) & set(pretrain) and sorted(test + pretrain) == list(range(30))
    assert "stl: no labels: 30 images, 15 held out for label-free evaluation" in caplog.text
    again = read_tarball(d, src, "stl")
    np.testing.assert_array_equal(again.test.images, splits.test.images)


def test_stl10_unlabelled_only_with_limits(tmp_path):
    src, d = _stl(tmp_path, **{"data.unlabeled_limit": 12, "data.test_limit": 4, "data.image_size": 32})
    make_stl10_unlabelled_tarball(src, unlabeled=40)
    splits = read_tarball(d, src, "stl")
    # the limit is drawn as the file streams; the held-out slice comes out of the images read
    assert splits.test.images.shape == (4, 3, 32, 32) and splits.unlabeled.shape == (12 - 6, 3, 32, 32)


def test_stl10_with_a_labelled_file_missing_is_still_refused(tmp_path):
    src, d = _stl(tmp_path)
    members = {
        "stl10_binary/unlabeled_X.bin": stl10_bytes(stl10_images(8, 0)),
        "stl10_binary/train_X.bin": stl10_bytes(stl10_images(4, 1)),
        "stl10_binary/train_y.bin": bytes([1, 2, 3, 4]),
    }
    src.write_bytes(pack_tarball(members))
    with pytest.raises(DataError, match="missing stl10_binary/test_X.bin"):
        read_tarball(d, src, "stl")
    src.write_bytes(pack_tarball({"stl10_binary/unlabeled_X.bin": stl10_bytes(stl10_images(3, 0))}))
    with pytest.raises(DataError, match="only 3 image\\(s\\); at least 4 images needed"):
        read_tarball(d, src, "stl")


# -- the data steps ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unlabeled", "flat with sub-folders"])
def test_the_data_steps_write_and_read_a_dataset_without_labels(tmp_path, kind):
    root = tmp_path / "ds"
    codes, _ = _layout(root, kind, 24)
    cfg = Config().override(
        {"data.format": "imagefolder", "data.source": str(root), "data.image_size": SIZE, "data.workers": 1}
    )
    outs = [tmp_path / "out" / f"{n}.npz" for n in ("train", "val", "test")]
    result = download_split(cfg, *outs, tmp_path / "out" / "manifest.json")
    held = held_out_count(24, 0.2)
    assert result["class_names"] == [] and result["train_size"] == result["val_size"] == 0
    assert result["test_size"] == held and result["unlabeled_size"] == 24 - held
    assert len(result["manifest_sha256"]) == 64

    train = read_split("train split", outs[0], unlabeled=True)
    assert train.class_names == () and train.images.shape == (0, 3, SIZE, SIZE) and train.labels.shape == (0,)
    assert train.labels.dtype == np.int64 and train.images.dtype == np.uint8
    assert train.unlabeled.shape == (24 - held, 3, SIZE, SIZE)
    np.testing.assert_array_equal(train.pretraining_images(), train.unlabeled)
    val = read_split("val split", outs[1], unlabeled=True)
    assert len(val) == 0 and val.class_names == () and val.unlabeled is None
    test = read_split("test split", outs[2], unlabeled=True)
    assert len(test) == held and (test.labels == -1).all() and test.class_names == () and test.unlabeled is None
    assert not set(_codes(test.images)) & set(_codes(train.unlabeled))
    assert test.meta["split"] == "test" and test.meta["unlabeled_size"] == 24 - held

    stats = compute_stats(cfg, outs[0], tmp_path / "out" / "stats.json")
    assert stats["count"] == 24 - held  # the pretraining images, all of them unlabelled
    expected = train.unlabeled.reshape(len(train.unlabeled), 3, -1).transpose(1, 0, 2).reshape(3, -1).mean(1) / 255
    np.testing.assert_allclose(stats["mean"], expected)
