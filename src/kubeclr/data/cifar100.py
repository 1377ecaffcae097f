"""The CIFAR-100 python tarball: the CIFAR-10 pickle layout with two label sets.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-100-python/train   50000 images: b"data", b"fine_labels" (0-99), b"coarse_labels" (0-19)
    cifar-100-python/test    10000 images, the same keys
    cifar-100-python/meta    b"fine_label_names" (100), b"coarse_label_names" (20)

``data`` rows are laid out as in CIFAR-10 (R, G, B planes of 32×32). Parsing
uses the same safe tar reader, allowlist unpickler and validation.
"""

from __future__ import annotations

from pathlib import Path

from kubeclr.data.cifar import Batch, parse_batch, parse_meta, pickled_members

ROOT = "cifar-100-python"
MEMBERS = ("train", "test", "meta")


def read_cifar100(
    source: str | Path | bytes, *, labels: str = "fine", origin: str
) -> tuple[Batch, Batch, tuple[str, ...]]:
    """Read, safely unpickle and validate a CIFAR-100 python tarball.

    Args:
        source: path of the ``.tar.gz`` or its bytes.
        labels: ``'fine'`` (100 classes) or ``'coarse'`` (20 superclasses).
        origin: the tarball's name (path or URI), used in every error.

    Returns:
        ``(train, test, class_names)``.

    Raises:
        DataError: unsafe or corrupt archive, missing member, unsafe pickle, wrong shapes or labels.
    """
    load = pickled_members(source, ROOT, MEMBERS, origin=origin, dataset="CIFAR-100")
    names = parse_meta(load("meta"), origin=f"{origin}:{ROOT}/meta", key=f"{labels}_label_names")
    train, test = (
        parse_batch(load(n), len(names), origin=f"{origin}:{ROOT}/{n}", labels_key=f"{labels}_labels")
        for n in ("train", "test")
    )
    return train, test, names
