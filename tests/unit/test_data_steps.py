"""``download_split`` and ``compute_stats`` end to end on tiny CIFAR-layout tarballs."""

from __future__ import annotations

import logging

import numpy as np
from cifar_fixtures import CLASS_NAMES, batch_arrays, make_cifar_tarball

from kubeclr.atomic import read_json
from kubeclr.config import Config, load_config
from kubeclr.data.files import load_split
from kubeclr.steps.compute_stats import run as compute_stats
from kubeclr.steps.download_split import run as download_split


def _cfg(tmp_path, **values):
    return Config().override({"data.cache_dir": str(tmp_path / "cache"), **values})


def _outs(tmp_path):
    return [tmp_path / "out" / f"{n}.npz" for n in ("train", "val", "test")]


def test_batch5_split_preserves_pixels_and_labels(tmp_path):
    src = tmp_path / "cifar.tar.gz"
    md5 = make_cifar_tarball(src, per_batch=20, seed=7)
    result = download_split(_cfg(tmp_path, **{"data.source": src.as_uri(), "data.md5": md5}), *_outs(tmp_path))
    train, val, test = (load_split(p) for p in _outs(tmp_path))
    arrays = batch_arrays(per_batch=20, seed=7)  # the oracle: what the tarball holds
    np.testing.assert_array_equal(train.images, np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 5)]))
    np.testing.assert_array_equal(train.labels, np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 5)]))
    np.testing.assert_array_equal(val.images, arrays["data_batch_5"][0])
    np.testing.assert_array_equal(test.labels, arrays["test_batch"][1])
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.class_names == CLASS_NAMES
    assert result["train_size"] == 80 and result["val_size"] == 20 and result["test_size"] == 20
    assert result["md5"] == md5 and result["synthetic"] is False and result["source"] == src.as_uri()
    for split, name in ((train, "train"), (val, "val"), (test, "test")):
        assert split.meta == {
            "source": src.as_uri(),
            "synthetic": False,
            "seconds": result["seconds"],
            "md5": md5,
            "split": name,
            "format": "cifar10",
            "image_size": 32,
            "train_size": 80,
            "val_size": 20,
            "test_size": 20,
            "unlabeled_size": 0,
            "skipped_images": 0,
            "manifest_sha256": "",
        }


def test_random_split_and_limits(tmp_path):
    src = tmp_path / "cifar.tar.gz"
    make_cifar_tarball(src, per_batch=40)
    cfg = _cfg(
        tmp_path,
        **{
            "data.source": str(src),
            "data.md5": "none",
            "data.val_split": "random:0.25",
            "data.train_limit": 50,
            "data.val_limit": 30,
            "data.test_limit": 20,
        },
    )
    result = download_split(cfg, *_outs(tmp_path))
    train, val, test = (load_split(p) for p in _outs(tmp_path))
    assert (result["train_size"], result["val_size"], result["test_size"]) == (50, 30, 20)
    for split, n in ((train, 50), (val, 30), (test, 20)):
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=10), [n // 10] * 10)
    # No image is in both train and val (all fixture images are distinct random noise).
    assert not {im.tobytes() for im in train.images} & {im.tobytes() for im in val.images}


def test_sample_source_is_marked_synthetic(tmp_path, caplog):
    cfg = _cfg(tmp_path, **{"data.source": "sample", "data.sample_per_class": 3})  # md5 is not checked
    with caplog.at_level(logging.WARNING):
        result = download_split(cfg, *_outs(tmp_path))
    assert result["synthetic"] is True and result["source"] == "sample"
    assert (result["train_size"], result["val_size"], result["test_size"]) == (120, 30, 30)
    assert load_split(_outs(tmp_path)[0]).meta["synthetic"] is True
    assert "SYNTHETIC" in caplog.text and "not CIFAR-10" in caplog.text
    stats = compute_stats(cfg, _outs(tmp_path)[0], tmp_path / "out" / "stats.json")
    assert stats["synthetic"] is True and stats["count"] == 120
    assert read_json(tmp_path / "out" / "stats.json")["mean"] == stats["mean"]


def test_rerun_replaces_outputs_atomically(tmp_path):
    src = tmp_path / "cifar.tar.gz"
    make_cifar_tarball(src, per_batch=10)
    cfg = _cfg(tmp_path, **{"data.source": str(src), "data.md5": "none"})
    download_split(cfg, *_outs(tmp_path))
    download_split(cfg.override({"data.train_limit": 20}), *_outs(tmp_path))
    assert len(load_split(_outs(tmp_path)[0])) == 20
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.npz", "train.npz", "val.npz"]


def test_smoke_preset_sizes(tmp_path):
    cfg = load_config("smoke").override({"data.cache_dir": str(tmp_path / "cache")})
    result = download_split(cfg, *_outs(tmp_path))
    assert result["synthetic"] is True
    assert result["train_size"] == cfg.data.train_limit and result["val_size"] == cfg.data.val_limit
