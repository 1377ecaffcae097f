"""The ``compute_stats`` step: per-channel mean/std of the pretraining images, in [0, 1], streamed and exact.

The pretraining images are the train split's labelled images and, when the dataset has them,
its unlabelled ones: the statistics normalise what the encoder sees. Shards streamed with
``data.stream`` are not decoded into the split: their statistics are those of a seeded sample of
:data:`STREAMED_SAMPLE` images (``sampled_from`` says of how many).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

from kubeclr.atomic import write_json
from kubeclr.config import Config
from kubeclr.data.files import read_split, split_facts
from kubeclr.data.stats import channel_mean_std, check_spread, iter_npz_rows
from kubeclr.data.stream import META_KEY, decode_sample, open_index
from kubeclr.errors import DataError
from kubeclr.storage.folders import shard_dir

log = logging.getLogger(__name__)

STREAMED_SAMPLE = 50_000  # images decoded for the statistics of streamed shards: means to ~1e-3 at any size

# What this step reads of the config: nothing: the statistics have no parameters (kubeclr.steps).
READS: tuple[str, ...] = ()


def run(cfg: Config, train_path: str | Path, stats_out: str | Path) -> dict:
    """Write the statistics of the train split's images, labelled and unlabelled (float64, one pass, bounded memory).

    Args:
        cfg: the run's config (the statistics have no parameters; kept for the step contract).
        train_path: the train split file.
        stats_out: where to write the stats JSON.

    Returns:
        The stats dict: ``{"mean", "std", "count", "seconds", "synthetic"[, "sampled_from"]}``.

    Raises:
        DataError: a missing or malformed split file; a channel with the same value in every pixel.
    """
    del cfg
    start = time.perf_counter()
    _, meta = split_facts("train split", train_path)
    streamed = META_KEY in meta
    arrays = ("images", "unlabeled") if meta.get("unlabeled_size") else ("images",)
    try:
        if streamed:  # shards: a seeded sample, decoded (what the encoder sees, read from the shards once)
            index = open_index(read_split("train split", train_path, unlabeled=True), shard_dir, unlabeled=True)
            rows = iter([decode_sample(index, STREAMED_SAMPLE, seed=0)[0]])
        else:
            rows = itertools.chain.from_iterable(iter_npz_rows(Path(train_path), a) for a in arrays)
        mean, std, count = channel_mean_std(rows)
    except ValueError as exc:
        raise DataError(f"{train_path}: {exc}") from None
    what = "the train split" + (" (labelled and unlabelled images)" if len(arrays) > 1 else "")
    if streamed:
        log.info(
            "streamed shards: statistics over a seeded sample of %d of the %d pretraining images", count, len(index)
        )
    check_spread(mean, std, what)
    stats = {
        "mean": mean,
        "std": std,
        "count": count,
        "seconds": time.perf_counter() - start,
        "synthetic": bool(meta.get("synthetic", False)),
        **({"sampled_from": len(index)} if streamed else {}),
    }
    write_json(stats_out, stats)
    log.info(
        "train statistics over %d images: mean %s std %s",
        count,
        [round(m, 4) for m in mean],
        [round(s, 4) for s in std],
    )
    return stats
