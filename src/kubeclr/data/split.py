"""Train/validation split and stratified subsets, deterministic in a seed.

``batch5`` follows the seed recipe: ``data_batch_1..4`` train, ``data_batch_5``
validation (80:20). ``random:<f>`` pools all five train batches and holds out
a fraction ``f`` of *each class*. Limits take a stratified subset whose class
proportions match the full split (largest-remainder rounding).
"""

from __future__ import annotations

import numpy as np

from kubeclr.data.cifar import Batch
from kubeclr.errors import ConfigError

# Independent random streams for the different draws of one seed.
_STREAM_SPLIT, _STREAM_TRAIN, _STREAM_VAL, _STREAM_TEST = range(4)
STREAMS = {"train": _STREAM_TRAIN, "val": _STREAM_VAL, "test": _STREAM_TEST}


def _concat(batches: tuple[Batch, ...] | list[Batch]) -> Batch:
    return Batch(images=np.concatenate([b.images for b in batches]), labels=np.concatenate([b.labels for b in batches]))


def _take(batch: Batch, idx: np.ndarray) -> Batch:
    return Batch(images=batch.images[idx], labels=batch.labels[idx])


def parse_val_split(val_split: str) -> float | None:
    """``'batch5'`` -> None; ``'random:0.2'`` -> 0.2.

    Raises:
        ConfigError: anything else (names ``data.val_split``).
    """
    if val_split == "batch5":
        return None
    kind, _, frac = val_split.partition(":")
    try:
        fraction = float(frac)
    except ValueError:
        fraction = -1.0
    if kind != "random" or not 0 < fraction < 1:
        raise ConfigError(f"data.val_split={val_split!r} is not allowed ('batch5' or 'random:<fraction in (0,1)>')")
    return fraction


def stratified_counts(labels: np.ndarray, total: int) -> dict[int, int]:
    """How many of each class a stratified draw of ``total`` items takes.

    Quotas are ``total * n_c / N`` rounded by largest remainder (ties to the
    smaller class index), so they sum to exactly ``min(total, N)``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    total = min(total, int(counts.sum()))
    exact = counts * total / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    return {int(c): int(q) for c, q in zip(classes, quota)}


def stratified_indices(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random subset of size ``min(total, N)``, in original order."""
    chosen = []
    for cls, quota in stratified_counts(labels, total).items():
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:quota])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def split_train_val(train_batches: tuple[Batch, ...], val_split: str, seed: int) -> tuple[Batch, Batch]:
    """Split the five train batches into (train, val).

    Args:
        train_batches: ``data_batch_1..5`` in order.
        val_split: ``'batch5'`` or ``'random:<fraction>'``.
        seed: seed of the random split.

    Returns:
        ``(train, val)``.
    """
    fraction = parse_val_split(val_split)
    if fraction is None:
        return _concat(train_batches[:4]), train_batches[4]
    pool = _concat(train_batches)
    rng = np.random.default_rng([seed, _STREAM_SPLIT])
    val_idx = stratified_indices(pool.labels, int(round(fraction * len(pool.labels))), rng)
    is_val = np.zeros(len(pool.labels), dtype=bool)
    is_val[val_idx] = True
    return _take(pool, np.flatnonzero(~is_val)), _take(pool, val_idx)


def limit(batch: Batch, n: int, seed: int, stream: str) -> Batch:
    """A stratified subset of ``n`` items (``n == 0`` or ``n >= len``: unchanged).

    Args:
        batch: the split to subset.
        n: the limit (0 = no limit).
        seed: the data seed.
        stream: ``'train'``, ``'val'`` or ``'test'`` — each gets its own random stream.
    """
    if n == 0 or n >= len(batch.labels):
        return batch
    rng = np.random.default_rng([seed, STREAMS[stream]])
    return _take(batch, stratified_indices(batch.labels, n, rng))
