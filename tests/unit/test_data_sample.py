"""The synthetic 'sample' source: CIFAR layout, determinism, learnable classes."""

from __future__ import annotations

import hashlib

import numpy as np

from kubeclr.data.cifar import read_archive
from kubeclr.data.sample import CLASS_NAMES, render, sample_tarball


def test_layout_and_balance():
    archive = read_archive(sample_tarball(per_class=4), origin="sample")
    assert archive.class_names == CLASS_NAMES and len(set(CLASS_NAMES)) == 10
    for batch in (*archive.train, archive.test):
        assert batch.images.shape == (40, 3, 32, 32) and batch.images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(batch.labels, minlength=10), [4] * 10)


def test_deterministic_in_seed():
    md5 = lambda b: hashlib.md5(b).hexdigest()
    assert md5(sample_tarball(3, seed=0)) == md5(sample_tarball(3, seed=0))
    assert md5(sample_tarball(3, seed=0)) != md5(sample_tarball(3, seed=1))


def test_batches_differ_and_images_vary():
    archive = read_archive(sample_tarball(per_class=5), origin="sample")
    assert not np.array_equal(archive.train[0].images, archive.train[1].images)
    red = archive.test.images[archive.test.labels == 0]
    assert len({im.tobytes() for im in red}) == len(red)  # per-image variation


def test_linear_probe_separates_classes():
    """Ridge regression on raw pixels must tell the classes apart (the demo needs learnable data)."""
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(10), 40), np.repeat(np.arange(10), 20)
    x_train = render(y_train, rng).reshape(400, -1) / 255.0
    x_test = render(y_test, rng).reshape(200, -1) / 255.0
    x_train, x_test = (np.c_[x, np.ones(len(x))] for x in (x_train, x_test))
    # Ridge in its dual form: 400×400 instead of 3073×3073.
    alpha = np.linalg.solve(x_train @ x_train.T + 10 * np.eye(len(x_train)), np.eye(10)[y_train])
    accuracy = (np.argmax(x_test @ (x_train.T @ alpha), axis=1) == y_test).mean()
    assert accuracy > 0.6  # chance is 0.1
