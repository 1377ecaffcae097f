"""``simclr-pipeline make-shards``: any dataset source written as WebDataset shards, in a folder or under s3://.

The source is read exactly as the pipeline's data step reads it (``read_dataset`` of
:mod:`kubeclr.steps.download_split`: same formats, splits, resizing), then written by
:func:`kubeclr.data.shard_writer.write_shards` into a staging folder. A local DEST gets that
folder renamed into place, so a failure leaves nothing half-written; an ``s3://`` DEST gets
each file uploaded, and what was uploaded is deleted again if an upload fails. A DEST that
already holds something is refused: shards are never mixed with older ones.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from kubeclr.atomic import make_dir
from kubeclr.config import CANONICAL, Config, stored_size
from kubeclr.config.data import NATIVE_SIZE
from kubeclr.errors import StorageError, UserError
from kubeclr.uri import redact_uri, split_uri

if TYPE_CHECKING:  # the readers and the writer (numpy, Pillow) load when the command runs, not with --help
    from kubeclr.data.formats import Splits

FORMATS = tuple(NATIVE_SIZE)  # every data.format


def add_make_shards_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "make-shards",
        formatter_class=formatter,
        help="write a dataset as WebDataset shards (a folder or an s3:// prefix)",
        description="Read SOURCE as the pipeline's data step does (any data.format: its train / val / test "
        "splits, resized to --image-size) and write it to DEST as WebDataset shards: train-000000.tar, "
        "val-…, test-…, unlabeled-… (uncompressed POSIX tar, each sample a PNG and its class index as .cls) "
        "and classes.txt. A dataset without labels becomes unlabeled-*.tar alone. Every image is kept: "
        "the data.*_limit keys are 0 unless set with --set. DEST must be empty or new; nothing is left "
        "half-written. Train on the result with `simclr-pipeline run --local --data-source DEST --set "
        "data.format=webdataset --set data.image_size=N` (N: the size the shards were written at; the summary "
        "prints it).",
        epilog="examples:\n  simclr-pipeline make-shards https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
        "shards/cifar10\n  simclr-pipeline make-shards ./photos s3://bucket/datasets/photos/ --image-size 64 "
        "--shard-size 1GB",
    )
    p.add_argument("source", metavar="SOURCE", help="the dataset: a path, file:///…, https://…, s3://…, 'sample'")
    p.add_argument("dest", metavar="DEST", help="an empty or new folder, or an s3://bucket/prefix/ with no objects")
    p.add_argument(
        "--format",
        dest="data_format",
        choices=FORMATS,
        metavar="FORMAT",
        help=f"data.format of SOURCE: {', '.join(FORMATS)} (default: webdataset for a folder of shards, "
        "imagefolder for another folder or a .zip, else cifar10)",
    )
    p.add_argument(
        "--shard-size",
        default="256MB",
        metavar="SIZE",
        help="largest shard, e.g. 256MB, 1GB, 500KB, 64MiB or bytes (a single larger sample gets its own shard)",
    )
    p.add_argument(
        "--image-size", type=int, metavar="N", help="data.image_size: side of the stored images (0 = native)"
    )
    p.add_argument(
        "--shuffle-seed",
        type=int,
        default=0,
        metavar="N",
        help="write each split's samples in this seed's random order, so every shard mixes classes (default 0)",
    )
    p.add_argument(
        "--no-shuffle", action="store_true", help="write the samples in the source's order (shards may hold one class)"
    )
    p.add_argument(
        "--data-md5",
        metavar="HEX|none",
        help="expected MD5 of a tarball (default: the official one for a format's canonical download, else none)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="override one config key (repeatable), e.g. data.val_fraction=0.1; see `simclr-pipeline keys`",
    )


def _local_path(uri: str) -> Path | None:
    """The local path ``uri`` names (a path or ``file:///``), or None for ``s3://``."""
    scheme, rest = split_uri(uri)
    return None if scheme == "s3" else Path(os.path.abspath(os.path.expanduser(rest)))


def _default_format(source: str) -> str | None:
    """The format a local SOURCE can only be; None where the config's default (cifar10) applies."""
    from kubeclr.data.shards import shard_files

    with contextlib.suppress(StorageError):
        path = _local_path(source)
        if path is not None and path.is_dir():
            return "webdataset" if shard_files(path) else "imagefolder"
        if path is not None and path.name.lower().endswith(".zip"):
            return "imagefolder"
    return None


def shards_config(
    source: str, *, fmt: str | None, md5: str | None, image_size: int | None, overrides: list[str]
) -> Config:
    """The config that reads ``source``: every image (limits 0), ``--set`` applied, then the flags.

    Without ``--data-md5``, a format's canonical download keeps its official MD5 and any other source
    is not checked (``none``), as for a local image folder.
    """
    cfg = Config().override(list(overrides))
    given = {item.partition("=")[0].strip() for item in overrides}
    fmt = fmt or (None if "data.format" in given else _default_format(source))
    for flag, key, value in (
        ("SOURCE", "data.source", source),
        ("--format", "data.format", fmt),
        ("--image-size", "data.image_size", image_size),
        ("--data-md5", "data.md5", md5),
    ):
        if value is not None:
            cfg = cfg.override({key: value}, origin=flag)
    canonical = {url for url, _ in CANONICAL.values()}
    if md5 is None and "data.md5" not in given and cfg.data.source not in canonical:
        cfg = cfg.override({"data.md5": "none"}, origin="make-shards")
    return cfg


def check_dest(dest: str) -> None:
    """Refuse a DEST that holds anything already (a file, a non-empty folder, objects under the prefix).

    Raises:
        UserError: DEST is not empty or not a folder; StorageError: the bucket cannot be listed.
    """
    path = _local_path(dest)
    if path is None:
        from kubeclr.storage.store import open_store

        found = open_store(dest).list()
        if found:
            raise UserError(f"DEST {redact_uri(dest)} holds {len(found)} object(s) already; refusing to overwrite")
        return
    if path.exists() and not path.is_dir():
        raise UserError(f"DEST {dest}: a file is in the way (a folder is needed)")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"DEST {dest} exists and is not empty; refusing to overwrite (give a new or empty folder)")


def rejoin_held_out(splits: Splits, cfg: Config) -> Splits:
    """A dataset without labels with its held-out test slice put back among the unlabelled images,
    in the order its source held them, so that reading the shards holds out the same slice again.

    The slice is the seeded one of :mod:`kubeclr.data.formats`; under a test or unlabelled limit
    (some images left out) the order cannot be restored, and the slice goes first.
    """
    import numpy as np

    from kubeclr.data.cifar import Batch
    from kubeclr.data.formats import Splits, held_out  # held_out: the one definition of the slice (private)

    d = cfg.data
    test, rest = splits.test.images, splits.unlabeled
    if splits.class_names or not len(test):
        return splits
    joined = np.concatenate([test, rest])
    if not d.test_limit and not d.unlabeled_limit:
        test_idx, rest_idx = held_out(len(joined), d, "make-shards")
        if len(test_idx) == len(test):
            joined[test_idx], joined[rest_idx] = test, rest
    empty = Batch(images=test[:0], labels=splits.test.labels[:0])
    return Splits(splits.train, splits.val, empty, joined, (), splits.manifest, splits.skipped)


@contextlib.contextmanager
def _staging(dest: str) -> Iterator[Path]:
    """A folder to write into: next to a local DEST (one rename publishes it), or a temporary one."""
    path = _local_path(dest)
    if path is None:
        with tempfile.TemporaryDirectory(prefix="kubeclr-shards-") as tmp:
            yield Path(tmp)
        return
    make_dir("DEST's parent", path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once renamed


def publish(staged: Path, files: list[str], dest: str) -> None:
    """Move the written files to DEST: one rename for a folder, one upload each for ``s3://``.

    Raises:
        UserError: the folder was filled meanwhile; StorageError: an upload failed (uploads undone).
    """
    path = _local_path(dest)
    if path is not None:
        mask = os.umask(0)
        os.umask(mask)
        staged.chmod(0o777 & ~mask)  # mkdtemp made it private; DEST gets a new folder's permissions
        try:
            os.rename(staged, path)  # replaces an empty folder, refuses a non-empty one
        except OSError as exc:
            raise UserError(f"DEST {dest}: cannot move the shards into place ({exc.strerror})") from None
        return
    from kubeclr.storage.store import open_store

    store, done = open_store(dest), []
    try:
        for name in files:
            store.put_file(staged / name, name)
            done.append(name)
    except BaseException:
        for name in done:
            with contextlib.suppress(StorageError):
                store.delete(name)
        raise


def make_shards(cfg: Config, dest: str, *, shard_bytes: int, shuffle_seed: int | None = 0) -> dict:
    """Read the dataset ``cfg.data`` names and write it to ``dest`` as shards; the writer's summary.

    Returns:
        :func:`~kubeclr.data.shard_writer.write_shards`'s summary plus ``dest``, ``source``,
        ``synthetic`` and ``skipped`` (images left out under ``data.on_bad_image=skip``).
    """
    from kubeclr.data.shard_writer import write_shards
    from kubeclr.steps.download_split import read_dataset  # the data step's own reading
    from kubeclr.storage.sources import local_source

    check_dest(dest)
    if not cfg.storage.mirror_uri:  # a missing local source fails before anything is read
        local_source(cfg.data.source, folder_ok=True)
    splits, facts = read_dataset(cfg)
    splits = rejoin_held_out(splits, cfg)
    with _staging(dest) as staged:
        summary = write_shards(splits, staged, shard_bytes=shard_bytes, shuffle_seed=shuffle_seed)
        publish(staged, summary["files"], dest)
    facts = {"source": facts["source"], "synthetic": facts["synthetic"], "skipped": len(splits.skipped)}
    return {**summary, "dest": dest, "image_size": stored_size(cfg.data), **facts}


def _human(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def print_summary(summary: dict) -> None:
    parts = summary["splits"]
    shards = sum(s["shards"] for s in parts.values())
    total = sum(s["bytes"] for s in parts.values())
    classes = f"; classes.txt: {summary['classes']} classes" if summary["classes"] else "; no labels"
    print(f"wrote {shards} shard(s), {_human(total)}, to {redact_uri(summary['dest'])}{classes}")
    for prefix, s in parts.items():
        print(f"  {prefix:10s} {s['samples']:>9,} samples  {s['shards']:>5,} shard(s)  {_human(s['bytes']):>9s}")
    if summary["skipped"]:
        print(f"  {summary['skipped']} image(s) skipped (data.on_bad_image=skip; see the log)")
    if summary["synthetic"]:
        print("  (SYNTHETIC sample data, not a real dataset)")
    size = summary["image_size"]  # shards carry no size of their own: a run must be told it
    print(f"train on them: --data-source DEST --set data.format=webdataset --set data.image_size={size}")


def cmd_make_shards(args: argparse.Namespace) -> int:
    from kubeclr.data.shard_writer import parse_size

    shard_bytes = parse_size(args.shard_size, "--shard-size")
    cfg = shards_config(
        args.source, fmt=args.data_format, md5=args.data_md5, image_size=args.image_size, overrides=args.overrides
    )
    seed = None if args.no_shuffle else args.shuffle_seed
    print_summary(make_shards(cfg, args.dest, shard_bytes=shard_bytes, shuffle_seed=seed))
    return 0
