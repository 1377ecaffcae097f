"""CIFAR-100, STL-10 and image folders read into one split contract; hostile archives and layouts refused.

Oracles: the arrays the fixtures wrote (STL-10 byte by byte, column-major), content hashes for
split integrity, and marked pixels for "an unlabelled image never reaches evaluation".
"""

from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
import pytest

from kubeclr.config import Config, check_folder_source, load_config
from kubeclr.data.archives import extract_archive
from kubeclr.data.files import load_split
from kubeclr.data.folder import scan_folder
from kubeclr.data.formats import read_image_folder, read_tarball
from kubeclr.errors import ConfigError, DataError
from kubeclr.steps.download_split import run as download_split
from tests.dataset_fixtures import (
    FOLDER_CLASSES,
    bomb_png,
    make_cifar100_tarball,
    make_stl10_tarball,
    pack_folder,
    write_image_folder,
    zip_with,
)


def _data(**values):
    return Config().override({f"data.{k}": v for k, v in values.items()}).data


def _outs(tmp_path):
    return [tmp_path / "out" / f"{n}.npz" for n in ("train", "val", "test")] + [tmp_path / "out" / "manifest.json"]


# -- CIFAR-100 and STL-10 ------------------------------------------------------------------


@pytest.mark.parametrize("labels, n_classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_or_coarse_labels(tmp_path, labels, n_classes):
    src = tmp_path / "c100.tar.gz"
    oracle = make_cifar100_tarball(src, train=200, test=40)
    d = _data(format="cifar100", source=str(src), md5="none", cifar100_labels=labels, val_fraction=0.25)
    splits = read_tarball(d, src, str(src))
    assert len(splits.class_names) == n_classes and splits.class_names[0] == f"{labels}00"
    key = 1 if labels == "fine" else 2
    np.testing.assert_array_equal(splits.test.images, oracle["test"][0])
    np.testing.assert_array_equal(splits.test.labels, oracle["test"][key])
    assert len(splits.train.labels) + len(splits.val.labels) == 200 and len(splits.val.labels) == 50
    assert len(splits.unlabeled) == 0


def test_cifar100_default_source_is_the_canonical_tarball():
    d = _data(format="cifar100")
    assert d.source.endswith("cifar-100-python.tar.gz") and d.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert _data(format="stl10").source.endswith("stl10_binary.tar.gz")
    with pytest.raises(ConfigError, match="data.format=imagefolder needs data.source"):
        check_folder_source(_data(format="imagefolder"))
    # the smoke preset's CIFAR-shaped demo source under another format: that format's own demo or download
    assert _data(format="imagefolder", source="sample").source == "sample-folder"
    stl = _data(format="stl10", source="sample", md5="none")
    assert stl.source.endswith("stl10_binary.tar.gz") and stl.md5 == "91f7769df0f17e558f3565bffb0c7dfb"
    with pytest.raises(ConfigError, match="'sample-folder' is an image folder; it cannot be read as stl10"):
        _data(format="stl10", source="sample-folder")


def test_switching_the_format_again_follows_the_new_format():
    """A config normalised for one format (as a compiled pipeline's defaults are) switched to another."""
    stl = load_config("paper", overrides=["data.format=stl10"])
    c100 = stl.override({"data.format": "cifar100"}).data
    assert c100.source.endswith("cifar-100-python.tar.gz") and c100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    back = stl.override({"data.format": "cifar10"}).data
    assert back.source.endswith("cifar-10-python.tar.gz") and back.md5 == "c58f30108f718f92721af3b95e74349a"
    folder = stl.override({"data.format": "imagefolder", "data.source": "s3://b/pets/"}).data
    assert folder.md5 == "none"  # STL-10's checksum says nothing about a folder
    with pytest.raises(ConfigError, match="needs data.source"):
        check_folder_source(stl.override({"data.format": "imagefolder"}).data)


def test_stl10_binary_is_read_column_major_with_unlabelled_images(tmp_path):
    src = tmp_path / "stl10_binary.tar.gz"
    oracle = make_stl10_tarball(src, train=20, test=10, unlabeled=30)
    d = _data(format="stl10", source=str(src), md5="none", val_fraction=0.2)
    splits = read_tarball(d, src, str(src))
    np.testing.assert_array_equal(splits.test.images, oracle["test"][0])  # (3, 96, 96) row-major, as written
    np.testing.assert_array_equal(splits.test.labels, oracle["test"][1].astype(np.int64) - 1)
    np.testing.assert_array_equal(splits.unlabeled, oracle["unlabeled"])
    assert splits.class_names == oracle["class_names"]
    assert (len(splits.train.labels), len(splits.val.labels)) == (16, 4)


def test_stl10_resized_at_ingestion_and_unlabelled_subset(tmp_path):
    src = tmp_path / "stl10_binary.tar.gz"
    oracle = make_stl10_tarball(src, train=10, test=10, unlabeled=40)
    d = _data(format="stl10", source=str(src), md5="none", image_size=32, unlabeled_limit=15)
    splits = read_tarball(d, src, str(src))
    assert splits.test.images.shape == (10, 3, 32, 32) and splits.unlabeled.shape == (15, 3, 32, 32)
    # antialiased: each output pixel is close to the mean of the 3x3 source block it covers
    block = oracle["test"][0][0, :, :3, :3].reshape(3, -1).mean(axis=1)
    assert np.abs(splits.test.images[0, :, 0, 0].astype(float) - block).max() < 40


def test_stl10_that_does_not_fit_the_memory_fails_before_reading(tmp_path):
    src = tmp_path / "stl10_binary.tar.gz"
    src.write_bytes(b"never read")
    d = _data(format="stl10", source=str(src), md5="none", memory_limit_gb=1.0)
    with pytest.raises(DataError, match=r"STL-10 \(113,000 images\): 113,000 images at 96 px are 3.12 GB"):
        read_tarball(d, src, str(src))


def test_stl10_with_wrong_label_count_is_refused(tmp_path):
    from kubeclr.data.cifar import pack_tarball
    from tests.dataset_fixtures import stl10_bytes, stl10_images

    src = tmp_path / "bad.tar.gz"
    members = {f"stl10_binary/{s}_X.bin": stl10_bytes(stl10_images(4, 0)) for s in ("train", "test")}
    members |= {"stl10_binary/train_y.bin": bytes([1, 2, 3, 4]), "stl10_binary/test_y.bin": bytes([1, 2, 3])}
    src.write_bytes(pack_tarball(members))
    with pytest.raises(DataError, match="test_X.bin has 4 images but test_y.bin 3 labels"):
        read_tarball(_data(format="stl10", source=str(src), md5="none"), src, "bad.tar.gz")


# -- image folders -------------------------------------------------------------------------


def test_folder_classes_are_sorted_folder_names_and_every_mode_decodes(tmp_path):
    counts = write_image_folder(tmp_path / "ds", train=8, test=4, unlabeled=5)
    d = _data(format="imagefolder", source=str(tmp_path / "ds"), image_size=24, workers=1)
    splits = read_image_folder(d, tmp_path / "ds", "ds")
    assert splits.class_names == FOLDER_CLASSES
    assert len(splits.train.labels) + len(splits.val.labels) == counts["train"]
    assert len(splits.test.labels) == counts["test"] and len(splits.unlabeled) == 5
    assert splits.train.images.shape[1:] == (3, 24, 24) and splits.train.images.dtype == np.uint8
    # stratified val: every class in both
    assert set(splits.val.labels) == set(splits.train.labels) == {0, 1, 2}
    assert len(splits.manifest) == counts["train"] + counts["test"] + 5
    assert all(len(h) == 64 for h in splits.manifest.values())


def test_no_image_in_two_splits_and_unlabelled_images_never_reach_evaluation(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, train=10, test=5, val=3)
    from PIL import Image

    (root / "unlabeled").mkdir()
    for k in range(6):  # pure magenta: no labelled image (random pixels) looks like it
        Image.new("RGB", (30, 30), (255, 0, 255)).save(root / "unlabeled" / f"m{k}.png")
    splits = read_image_folder(_data(format="imagefolder", source=str(root), image_size=16), root, "ds")

    def keys(images):
        return {hashlib.sha256(im.tobytes()).hexdigest() for im in images}

    train, val, test = keys(splits.train.images), keys(splits.val.images), keys(splits.test.images)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(splits.val.labels) == 9  # the folder's own val/ is used as is
    magenta = np.array([255, 0, 255])[:, None, None]
    for name in ("train", "val", "test"):
        images = getattr(splits, name).images
        assert not (images == magenta).all(axis=(1, 2, 3)).any(), name
    assert (splits.unlabeled == magenta).all()


def test_limits_apply_before_decoding(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, train=10, test=6, unlabeled=12)
    (root / "test" / "cat" / "zz-broken.png").write_bytes(b"broken")  # skipped, and counted, if it is drawn
    d = _data(
        format="imagefolder", source=str(root), train_limit=9, test_limit=3, unlabeled_limit=4, on_bad_image="skip"
    )
    splits = read_image_folder(d, root, "ds")
    assert len(splits.train.labels) == 9 and len(splits.unlabeled) == 4
    assert len(splits.test.labels) + len(splits.skipped) == 3
    assert len(splits.manifest) == 9 + len(splits.val.labels) + 3 + 4  # only the chosen files were read


def test_class_order_is_stable_when_files_are_added(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, classes=("b", "a", "c"), train=2, test=1)
    first = scan_folder(root, origin="ds")
    (root / "train" / "a" / "new.png").write_bytes((root / "train" / "b").iterdir().__next__().read_bytes())
    second = scan_folder(root, origin="ds")
    assert first.class_names == second.class_names == ("a", "b", "c")
    assert [p for p, _ in second.files["train"]] == sorted(p for p, _ in second.files["train"])


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda r: (r / "train" / "ant").mkdir(parents=True), "train/ant/ is an empty class folder"),
        (lambda r: (r / "train" / "x.png").write_bytes(b"x"), "train/x.png sits directly in train/"),
        (lambda r: __import__("shutil").rmtree(r / "test"), "no test/ folder"),
        (lambda r: __import__("shutil").rmtree(r / "train" / "dog"), None),
        (lambda r: (r / "test" / "yak").mkdir() or (r / "test" / "yak" / "y.png").write_bytes(b"y"), "test/yak/"),
        (lambda r: (r / "test" / "cat" / "link.png").symlink_to("/etc/passwd"), "link.png is a symbolic link"),
        (lambda r: (r / "train" / "cow").symlink_to("/etc", target_is_directory=True), "train/cow is a symbolic link"),
        (lambda r: (r / "train" / "cat" / "sub").symlink_to(r / "train", True), "train/cat/sub is a symbolic link"),
    ],
)
def test_bad_layouts_are_refused_with_the_path(tmp_path, make, fragment):
    root = tmp_path / "ds"
    write_image_folder(root, classes=("cat", "dog"), train=2, test=1)
    make(root)
    with pytest.raises(DataError) as err:
        scan_folder(root, origin="ds")
    assert str(err.value).startswith("ds: ")
    assert (fragment or "train/ has 1 class folder(s) (cat); at least two are needed") in str(err.value)


# -- archives ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ds.zip", "ds.tar.gz"])
def test_archives_with_a_wrapping_folder_are_read(tmp_path, name):
    write_image_folder(tmp_path / "src", train=3, test=2)
    archive = pack_folder(tmp_path / "src", tmp_path / name, prefix="mydata/")
    dest = tmp_path / "x"
    assert extract_archive(archive, dest, origin=name, member_limit=10**6, max_total_bytes=10**8) == 15
    assert scan_folder(dest, origin=name).class_names == FOLDER_CLASSES


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda p: zip_with(p, {"train/a/x.png": b"x", "../evil.png": b"x"}), "member '../evil.png' contains '..'"),
        (lambda p: zip_with(p, {"/abs.png": b"x"}), "member '/abs.png' has an absolute path"),
        (lambda p: zip_with(p, {"train/a/x.png": b"x"}, symlink="train/a/l.png"), "'train/a/l.png' is a symbolic link"),
        (lambda p: zip_with(p, {"train/a/big.png": b"\0" * 5000}), "larger than data.max_image_bytes=1000"),
        (lambda p: (p.write_bytes(b"PK\x03\x04 garbage"), p)[1], "not a readable zip archive"),
    ],
)
def test_hostile_zips_are_refused_and_nothing_is_written(tmp_path, build, fragment):
    archive = build(tmp_path / "evil.zip")
    dest = tmp_path / "work" / "dataset"
    with pytest.raises(DataError, match="^evil.zip: ") as err:
        extract_archive(archive, dest, origin="evil.zip", member_limit=1000, max_total_bytes=10**6)
    assert fragment in str(err.value)
    assert not dest.exists() and not (tmp_path / "evil.png").exists() and not (tmp_path / "work" / "evil.png").exists()


def test_a_tar_with_a_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("train/a/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="member 'train/a/link.png' is a symbolic link"):
        extract_archive(archive, tmp_path / "d", origin="evil.tar", member_limit=1000, max_total_bytes=10**6)
    assert not (tmp_path / "d").exists()


def test_a_zip_bomb_is_stopped_by_the_total(tmp_path):
    archive = zip_with(tmp_path / "bomb.zip", {f"train/a/{i}.png": b"\0" * 400_000 for i in range(5)})
    with pytest.raises(DataError, match="expands to more than"):
        extract_archive(archive, tmp_path / "d", origin="bomb.zip", member_limit=10**6, max_total_bytes=10**6)


# -- the data step: outputs, manifest, hostile inputs ----------------------------------------


def test_the_step_writes_unlabelled_images_only_into_train(tmp_path):
    write_image_folder(tmp_path / "ds", train=4, test=2, unlabeled=3)
    cfg = Config().override({"data.format": "imagefolder", "data.source": str(tmp_path / "ds"), "data.image_size": 16})
    result = download_split(cfg, *_outs(tmp_path))
    train = load_split(tmp_path / "out" / "train.npz", unlabeled=True)
    assert train.unlabeled.shape == (3, 3, 16, 16) and load_split(tmp_path / "out" / "train.npz").unlabeled is None
    for name in ("val", "test"):
        assert load_split(tmp_path / "out" / f"{name}.npz", unlabeled=True).unlabeled is None
    assert result["unlabeled_size"] == 3 and result["train_size"] + result["val_size"] == 12
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["files"]) == 12 + 6 + 3
    assert manifest["manifest_sha256"] == result["manifest_sha256"] and len(result["manifest_sha256"]) == 64


@pytest.mark.parametrize(
    "hostile, fragment",
    [
        (
            lambda r: (r / "train" / "cat" / "bomb.png").write_bytes(bomb_png()),
            "train/cat/bomb.png: declares 60000x60000",
        ),
        (lambda r: (r / "train" / "dog" / "notes.png").write_text("hello"), "train/dog/notes.png: not a JPEG, PNG"),
        (
            lambda r: (r / "test" / "emu" / "cut.jpg").write_bytes(
                (r / "test" / "emu").iterdir().__next__().read_bytes()[:300]
            ),
            "test/emu/cut.jpg: ",
        ),
    ],
)
def test_hostile_images_fail_the_step_by_name_and_leave_no_output(tmp_path, hostile, fragment):
    root = tmp_path / "ds"
    write_image_folder(root, train=3, test=2)
    hostile(root)
    before = set(tmp_path.rglob("*"))
    cfg = Config().override({"data.format": "imagefolder", "data.source": str(root)})
    with pytest.raises(DataError, match=fragment.replace("(", r"\(")):
        download_split(cfg, *_outs(tmp_path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert set(tmp_path.rglob("*")) - before <= {tmp_path / "out"}
