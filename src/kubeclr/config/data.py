"""The ``data`` section: dataset formats, their canonical downloads, and the stored image size."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from kubeclr.config.parse import option
from kubeclr.errors import ConfigError

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
# Each format's canonical download (URL, MD5); the CIFAR-10 defaults of data.source / data.md5
# stand for these when data.format names another format.
CANONICAL = {
    "cifar10": (CIFAR10_URL, CIFAR10_MD5),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    "stl10": ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb"),
}


@dataclass(frozen=True)
class DataConfig:
    format: str = option(
        "cifar10",
        choices=("cifar10", "cifar100", "stl10", "imagefolder", "webdataset"),
        help="dataset layout; the CIFAR-10 default source and MD5 stand for the format's canonical download",
    )
    source: str = option(
        CIFAR10_URL,
        help="https://…, s3://bucket/key (an image folder or shards: an s3:// prefix), file:///path, a path, "
        "'sample' (synthetic, CIFAR-10 layout) or 'sample-folder' (synthetic image folder)",
    )
    md5: str = option(CIFAR10_MD5, help="expected MD5 of the tarball, or 'none' to skip the check")
    val_split: str = option("batch5", help="cifar10 only: 'batch5' (data_batch_5 is validation) or 'random:<fraction>'")
    val_fraction: float = option(
        0.2, gt=0, le=0.9, help="cifar100, stl10 and image folders without val/: stratified fraction of train for val"
    )
    image_size: int = option(
        0,
        ge=0,
        help="side of the stored images, resized once at ingestion (0 = native: 32 CIFAR, 96 STL-10, 64 folders)",
    )
    cifar100_labels: str = option("fine", choices=("fine", "coarse"), help="cifar100: 100 fine or 20 coarse classes")
    unlabeled_limit: int = option(0, ge=0, help="random subset size of the unlabelled pretraining images (0 = all)")
    on_bad_image: str = option(
        "fail",
        choices=("fail", "skip"),
        help="image folders and shards: a corrupt or refused image fails the step, or is skipped",
    )
    max_image_bytes: int = option(32 * 1024 * 1024, ge=1, help="image folders: largest image file accepted")
    max_image_pixels: int = option(
        40_000_000, ge=1, help="image folders: most pixels an image may declare (decompression-bomb limit)"
    )
    max_archive_bytes: int = option(
        64 * 2**30, ge=1, help="image folder archives: most bytes extracted in all (each file counts at least 4 KiB)"
    )
    workers: int = option(
        0, ge=0, help="image folders and shards: decoding processes (0 = one per CPU the step may use)"
    )
    stream: bool = option(
        False,
        help="webdataset only: index the shards in the data step and stream them into pretraining and feature "
        "extraction (data larger than memory), instead of decoding them into the split files",
    )
    shuffle_buffer: int = option(
        2048, ge=0, help="streamed shards: samples each decoding process shuffles among (0 = shard order only)"
    )
    memory_limit_gb: float = option(
        0.0, ge=0, help="memory the data steps may use, checked before decoding (0 = the container's limit)"
    )
    train_limit: int = option(0, ge=0, help="stratified subset size of train (0 = all)")
    val_limit: int = option(0, ge=0, help="stratified subset size of val (0 = all)")
    test_limit: int = option(0, ge=0, help="stratified subset size of test (0 = all)")
    seed: int = option(0, ge=0, help="seed for random splits and subsets")
    cache_dir: str = option("~/.cache/kubeclr", help="local download cache")
    sample_per_class: int = option(600, ge=2, help="images per class and batch file for the 'sample' source")


# The side of each format's images as distributed (image folders have none: 64 is the default).
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "stl10": 96, "imagefolder": 64, "webdataset": 64}
FOLDERS = ("imagefolder", "webdataset")  # formats read from a folder or s3:// prefix: no canonical download


def data_defaults(d: DataConfig, origin: str) -> DataConfig:
    """``d`` with the source and MD5 that ``data.format`` implies. Idempotent.

    - A canonical download of one format (the CIFAR-10 defaults, or what an earlier
      normalisation put there) stands for the chosen format's canonical download, with its MD5.
      An image folder has none: its source is checked by :func:`check_folder_source`.
    - ``sample`` (the CIFAR-10-shaped demo data of the ``smoke`` preset) under another format
      becomes that format's demo: ``sample-folder`` for image folders, the canonical download
      (with its MD5) for CIFAR-100 and STL-10, which have no offline sample.
    - ``sample-folder`` under the default format selects ``imagefolder``.

    Raises:
        ConfigError: ``sample-folder`` read as CIFAR-100 or STL-10.
    """
    fmt = "imagefolder" if d.source == "sample-folder" and d.format == "cifar10" else d.format
    if d.stream and fmt != "webdataset":
        raise ConfigError(
            f"{origin}: data.stream=true streams WebDataset shards; data.format is {fmt} (write shards with "
            "'simclr-pipeline make-shards SOURCE DEST' and set data.format=webdataset data.source=DEST)"
        )
    source, md5 = d.source, d.md5
    if source == "sample-folder" and fmt != "imagefolder":
        raise ConfigError(f"{origin}: data.source='sample-folder' is an image folder; it cannot be read as {fmt}")
    canonical_urls = {url for url, _ in CANONICAL.values()}
    canonical_md5s = {m for _, m in CANONICAL.values()}
    if source == "sample" and fmt == "imagefolder":
        source = "sample-folder"
    elif source == "sample" and fmt in CANONICAL and fmt != "cifar10":
        source, md5 = CANONICAL[fmt]
    elif source in canonical_urls and fmt in CANONICAL:
        source = CANONICAL[fmt][0]
    if md5 in canonical_md5s and fmt in CANONICAL:  # another format's checksum can never match this one's file
        md5 = CANONICAL[fmt][1]
    elif md5 in canonical_md5s and fmt in FOLDERS:
        md5 = "none"  # another format's checksum says nothing about a folder
    chosen = {"format": fmt, "source": source, "md5": md5}
    changed = {k: v for k, v in chosen.items() if getattr(d, k) != v}
    if changed:  # the rule, made visible: say what the format implied
        log.info(
            "%s: data.format=%s implies %s (the format's own download or demo in place of another's)",
            origin,
            fmt,
            ", ".join(f"data.{k}={v!r} (was {getattr(d, k)!r})" for k, v in changed.items()),
        )
    return dataclasses.replace(d, **chosen)


def check_folder_source(d: DataConfig) -> None:
    """Refuse a folder format whose source is still a canonical dataset download (none was given).

    Raises:
        ConfigError: ``data.format=imagefolder`` or ``webdataset`` with a canonical CIFAR/STL URL as
            its source; shards from a ``sample`` source (there are none).
    """
    if d.format == "webdataset" and d.source in ("sample", "sample-folder"):
        raise ConfigError(
            f"data.format=webdataset: there is no {d.source} in shards; write some with "
            f"'simclr-pipeline make-shards {d.source} DEST' and give DEST as data.source"
        )
    if d.format in FOLDERS and d.source in {url for url, _ in CANONICAL.values()}:
        what = "a folder, a .tar/.tar.gz/.zip, an s3:// prefix, or 'sample-folder'"
        if d.format == "webdataset":
            what = "a folder or an s3:// prefix of train-*.tar / test-*.tar shards"
        raise ConfigError(
            f"data.format={d.format} needs data.source (--data-source, the data_source parameter): {what}"
        )


def stored_size(d: DataConfig) -> int:
    """Side of the images the data step stores: ``data.image_size``, or the format's native size."""
    return d.image_size or NATIVE_SIZE[d.format]
