"""The ``download_split`` step: fetch, verify and parse the tarball; write train / val / test.

Outputs appear only after everything they depend on has been fetched,
verified and parsed, and all three are renamed into place together, so a
failed step leaves no file that looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from kubeclr.atomic import atomic_path
from kubeclr.config import Config
from kubeclr.data.cifar import Batch, read_archive
from kubeclr.data.files import Split, save_split
from kubeclr.data.split import limit, split_train_val
from kubeclr.storage.sources import fetch_tarball

log = logging.getLogger(__name__)


def run(cfg: Config, train_out: str | Path, val_out: str | Path, test_out: str | Path) -> dict:
    """Fetch, verify and parse the CIFAR-10 tarball; write the train/val/test splits.

    Uses ``cfg.data`` (source, md5, val_split, limits, seed, cache_dir,
    sample_per_class) and ``cfg.storage.mirror_uri``.

    Args:
        cfg: the run's config.
        train_out, val_out, test_out: where to write the split files
            (:func:`kubeclr.data.files.save_split` format).

    Returns:
        ``{"source", "synthetic", "md5", "train_size", "val_size", "test_size",
        "class_names", "seconds", "config"}``; ``config`` is ``cfg`` as a dict, which
        the component hands to every later step.

    Raises:
        DataError: the source cannot be fetched, verified or safely parsed (the config's
            values were checked when it was resolved).
    """
    start = time.perf_counter()
    d = cfg.data
    tarball = fetch_tarball(d, cfg.storage.mirror_uri)
    archive = read_archive(tarball.data, origin=tarball.source)
    train, val = split_train_val(archive.train, d.val_split, d.seed)
    splits: dict[str, Batch] = {
        "train": limit(train, d.train_limit, d.seed, "train"),
        "val": limit(val, d.val_limit, d.seed, "val"),
        "test": limit(archive.test, d.test_limit, d.seed, "test"),
    }
    seconds = time.perf_counter() - start
    if tarball.synthetic:
        log.warning("the splits hold SYNTHETIC sample data, not CIFAR-10")
    meta = {"source": tarball.source, "synthetic": tarball.synthetic, "seconds": seconds, "md5": tarball.md5}
    outs = {"train": Path(train_out), "val": Path(val_out), "test": Path(test_out)}
    # All three files are renamed into place only after all three were written.
    with contextlib.ExitStack() as stack:
        tmps = {name: stack.enter_context(atomic_path(path)) for name, path in outs.items()}
        for name, batch in splits.items():
            save_split(
                tmps[name],
                Split(
                    images=batch.images,
                    labels=batch.labels,
                    class_names=archive.class_names,
                    meta={**meta, "split": name},
                ),
            )
    sizes = {f"{name}_size": int(len(b.labels)) for name, b in splits.items()}
    log.info("splits from %s: %s", tarball.source, sizes)
    return {
        "source": tarball.source,
        "synthetic": tarball.synthetic,
        "md5": tarball.md5,
        **sizes,
        "class_names": list(archive.class_names),
        "seconds": seconds,
        "config": cfg.to_dict(),
    }
