"""Train/val split and stratified limits: sizes, class balance, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from kubeclr.data.cifar import Batch
from kubeclr.data.split import limit, split_train_val, stratified_counts, stratified_indices
from kubeclr.errors import ConfigError


def _batches(per_batch=100, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for b in range(5):
        labels = rng.permutation(np.arange(per_batch) % classes)
        # Each image's first pixel encodes its (batch, index) so we can trace it.
        images = np.zeros((per_batch, 3, 32, 32), np.uint8)
        images[:, 0, 0, 0] = b
        images[:, 0, 0, 1] = np.arange(per_batch)
        out.append(Batch(images=images, labels=labels.astype(np.int64)))
    return tuple(out)


def _ids(batch):
    return set(zip(batch.images[:, 0, 0, 0].tolist(), batch.images[:, 0, 0, 1].tolist()))


def test_batch5_is_validation():
    batches = _batches()
    train, val = split_train_val(batches, "batch5", seed=0)
    assert len(train.labels) == 400 and len(val.labels) == 100
    np.testing.assert_array_equal(val.images, batches[4].images)
    np.testing.assert_array_equal(train.labels, np.concatenate([b.labels for b in batches[:4]]))


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_random_split_is_stratified_disjoint_and_complete(fraction):
    train, val = split_train_val(_batches(), f"random:{fraction}", seed=3)
    assert len(val.labels) == round(500 * fraction) and len(train.labels) + len(val.labels) == 500
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=10), [round(50 * fraction)] * 10)
    assert _ids(train).isdisjoint(_ids(val)) and len(_ids(train) | _ids(val)) == 500


def test_random_split_depends_only_on_seed():
    a = split_train_val(_batches(), "random:0.2", seed=1)[1]
    b = split_train_val(_batches(), "random:0.2", seed=1)[1]
    c = split_train_val(_batches(), "random:0.2", seed=2)[1]
    assert _ids(a) == _ids(b) and _ids(a) != _ids(c)


@pytest.mark.parametrize("bad", ["random:0", "random:1.5", "random:x", "kfold:0.2"])
def test_bad_val_split(bad):
    with pytest.raises(ConfigError, match="data.val_split"):
        split_train_val(_batches(), bad, seed=0)


def test_stratified_counts_largest_remainder():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert stratified_counts(labels, 10) == {0: 5, 1: 3, 2: 2}
    assert stratified_counts(labels, 7) == {0: 4, 1: 2, 2: 1}  # 3.5, 2.1, 1.4 -> remainder goes to class 0
    assert sum(stratified_counts(labels, 33).values()) == 33
    assert stratified_counts(labels, 1000) == {0: 50, 1: 30, 2: 20}


def test_stratified_indices_keep_order_and_proportions():
    labels = np.repeat(np.arange(4), 25)
    idx = stratified_indices(labels, 40, np.random.default_rng(0))
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [10] * 4)


def test_limit():
    batch = _batches()[0]
    assert limit(batch, 0, 0, "train") is batch and limit(batch, 1000, 0, "train") is batch
    sub = limit(batch, 30, 0, "train")
    np.testing.assert_array_equal(np.bincount(sub.labels, minlength=10), [3] * 10)
    assert _ids(sub) <= _ids(batch)
    assert _ids(limit(batch, 30, 0, "train")) == _ids(sub)  # deterministic
    assert _ids(limit(batch, 30, 0, "val")) != _ids(sub)  # separate streams per split
