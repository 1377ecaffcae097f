"""Streamed WebDataset shards: the index the data step writes, and the batches the later steps read.

With ``data.stream=true`` the data step reads every shard once (members checked, each image's
header checked against the byte and pixel bounds, nothing decoded) and writes split files that
hold, instead of pixels, each sample's address: its shard and its position there (``refs``), the
shards' names and SHA-256 in ``meta["stream"]`` (:func:`index_shards`). The later steps read the
shards again, as streams, from the same folder or ``s3://`` prefix (:func:`open_index`):

- pretraining (:class:`StreamedImages`, :func:`epoch_batches`): each epoch a shard order shuffled
  from (seed, epoch); rank r of W reads every W-th shard of it (disjoint, all shards once per
  epoch); each of ``data.workers`` DataLoader processes reads every k-th of its rank's, shuffles
  encoded samples in a bounded buffer, decodes them as image folders do and hands over chunks;
  the main process cuts them into fixed ``(B, 3, S, S)`` uint8 batches, pinned for a GPU. The
  order depends on (seed, epoch, rank, workers) only: a run resumed at an epoch boundary reads
  exactly what the uninterrupted run read;
- feature extraction: :func:`ordered_chunks`, every sample once;
- statistics, monitors, figures, the export check: :func:`decode_sample`, a seeded sample that
  reads only the shards it needs.

A shard whose bytes no longer hash to the indexed SHA-256 fails the step by name (checked when
the shard has been read to its end). Host memory is bounded by the buffers (the shuffle buffer
and two prefetched chunks per process), not by the dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from kubeclr.config import DataConfig, stored_size
from kubeclr.cpus import usable_cpus
from kubeclr.data.files import Split
from kubeclr.data.formats import choose_shard_samples
from kubeclr.data.images import BadImage, Limits, decode_image
from kubeclr.data.shards import HashingReader, Rule, ShardDir, iter_shard, read_shard_samples
from kubeclr.errors import ConfigError, DataError

log = logging.getLogger(__name__)

META_KEY = "stream"  # a split file's meta entry that marks it as an index of streamed shards
SHUFFLE_START = 100  # samples in a decoding process's shuffle buffer before it yields (WebDataset's default)


@dataclass(frozen=True)
class ShardIndex:
    """Where a split's samples are: the shards (names, SHA-256) and each sample's (shard, position).

    Attributes:
        where: the folder or ``s3://`` prefix of the shards (picklable: it travels to the decoding processes).
        shards: every shard's name, in the order ``refs[:, 0]`` counts them.
        digests: their SHA-256 when indexed.
        refs: int64 ``(N, 2)``: shard number, position of the sample's key in that shard.
        labels: int64 ``(N,)`` (-1 without).
    """

    where: ShardDir
    shards: tuple[str, ...]
    digests: tuple[str, ...]
    refs: np.ndarray
    labels: np.ndarray
    image_size: int
    limits: Limits
    on_bad: str

    def __len__(self) -> int:
        return int(self.refs.shape[0])

    def take(self, idx: np.ndarray) -> ShardIndex:
        """The samples at ``idx``."""
        return dataclasses.replace(self, refs=self.refs[idx], labels=self.labels[idx])

    def counts(self) -> np.ndarray:
        """Samples per shard (``len(shards)``,)."""
        return np.bincount(self.refs[:, 0], minlength=len(self.shards))

    def wanted(self, shard: int) -> dict[int, int]:
        """``{position: label}`` of this index's samples in ``shard``."""
        mine = self.refs[:, 0] == shard
        return dict(zip(self.refs[mine, 1].tolist(), self.labels[mine].tolist()))


# -- the data step: index, no pixels -------------------------------------------------------------


def index_shards(d: DataConfig, where: ShardDir, origin: str) -> dict[str, Any]:
    """Index the shards at ``where`` into the usual splits, decoding nothing.

    The samples are chosen as the resident path chooses them
    (:func:`~kubeclr.data.formats.choose_shard_samples`: val from ``val-*`` or a stratified
    fraction of train, limits, a held-out slice without labels).

    Returns:
        ``{"refs": {split: (N, 2)}, "labels": {split: (N,)}, "class_names", "meta", "manifest",
        "skipped"}`` for the splits train, val, test and unlabeled; ``meta`` is what every split
        file's ``meta["stream"]`` holds.
    """
    read = read_shard_samples(d, where, origin, keep=False)
    chosen = choose_shard_samples(d, read, origin)
    facts = {name: fact for shards in read["shards"].values() for name, fact in shards.items()}
    names = sorted(facts)
    number = {name: i for i, name in enumerate(names)}
    refs, labels = {}, {}
    for split in ("train", "val", "test", "unlabeled"):
        prefix, idx = chosen.get(split, ("unlabeled", np.zeros(0, dtype=np.int64)))
        samples = read["samples"].get(prefix)
        picked = [samples.refs[i] for i in idx] if samples is not None else []
        refs[split] = np.asarray([(number[n], pos) for n, pos in picked], dtype=np.int64).reshape(-1, 2)
        labels[split] = np.asarray([samples.labels[i] for i in idx] if samples is not None else [], dtype=np.int64)
    meta = {
        "source": d.source,
        "shards": [{"name": n, **facts[n]} for n in names],
        "image_size": stored_size(d),
        "max_image_bytes": d.max_image_bytes,
        "max_image_pixels": d.max_image_pixels,
        "on_bad_image": d.on_bad_image,
    }
    skipped = [m for got in read["samples"].values() for m in got.skipped]
    return {
        "refs": refs,
        "labels": labels,
        "class_names": read["class_names"],
        "meta": meta,
        "manifest": {n: facts[n]["sha256"] for n in names},
        "skipped": skipped,
    }


def open_index(split: Split, opener: Callable[[str], ShardDir], *, unlabeled: bool = False) -> ShardIndex | None:
    """The index a split file of streamed shards holds (None: the split holds its images).

    Args:
        opener: the shards' location from the source the data step read
            (:func:`kubeclr.storage.folders.shard_dir`; data never imports storage).
        unlabeled: also the train split's unlabelled samples (label -1), as pretraining reads them;
            the split must have been read with ``unlabeled=True``.
    """
    meta = split.meta.get(META_KEY)
    if meta is None:
        return None
    refs, labels = split.refs if split.refs is not None else np.zeros((0, 2), np.int64), split.labels
    if unlabeled and split.unlabeled_refs is not None and len(split.unlabeled_refs):
        refs = np.concatenate([refs, split.unlabeled_refs])
        labels = np.concatenate([labels, np.full(len(split.unlabeled_refs), -1, dtype=np.int64)])
    return ShardIndex(
        where=opener(meta["source"]),
        shards=tuple(s["name"] for s in meta["shards"]),
        digests=tuple(s["sha256"] for s in meta["shards"]),
        refs=np.asarray(refs, dtype=np.int64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64),
        image_size=int(meta["image_size"]),
        limits=Limits(max_bytes=int(meta["max_image_bytes"]), max_pixels=int(meta["max_image_pixels"])),
        on_bad=meta["on_bad_image"],
    )


# -- reading: one shard, then many in worker processes ---------------------------------------


def _encoded(index: ShardIndex, shard: int) -> Iterator[tuple[str, bytes, int]]:
    """``(name, encoded image, label)`` of the index's samples in ``shard``, in the shard's order."""
    name, wanted = index.shards[shard], index.wanted(shard)
    rule = Rule(labelled=False, num_classes=None, limits=index.limits, on_bad="skip")  # checked when indexed
    with index.where.open(name) as fh:
        reader = HashingReader(fh)
        for found in iter_shard(name, reader, rule):
            if found.position in wanted:
                yield f"{name}:{found.key}", found.image, wanted[found.position]
    if reader.sha256.hexdigest() != index.digests[shard]:
        raise DataError(
            f"shard {name}: its SHA-256 is not the one the data step indexed; the shards changed since "
            "(run the pipeline again from the data step)"
        )


class ShardStream(IterableDataset):
    """Decoded samples of some shards in chunks ``(images uint8 (k, 3, S, S), labels int64 ndarray (k,), names)``.

    Under a DataLoader with workers, worker w of k reads ``shards[w::k]``. With ``buffer`` > 0
    the encoded samples pass through a shuffle buffer of that many per worker (WebDataset's
    ``shuffle``): the order is drawn from ``seed`` and the worker's id, nothing else.
    """

    def __init__(self, index: ShardIndex, shards: Sequence[int], *, seed: Sequence[int], buffer: int, chunk: int):
        super().__init__()
        self.index, self.shards, self.seed, self.buffer, self.chunk = index, list(shards), list(seed), buffer, chunk

    def __iter__(self) -> Iterator[tuple[torch.Tensor, np.ndarray, list[str]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([*self.seed, worker])
        images: list[np.ndarray] = []
        labels: list[int] = []
        names: list[str] = []
        for name, data, label in self._shuffled(self.shards[worker::workers], rng):
            try:
                images.append(decode_image(data, self.index.image_size, name=name, limits=self.index.limits))
            except BadImage as exc:
                if self.index.on_bad == "fail":
                    raise
                log.warning("skipped: %s", exc)
                continue
            labels.append(label)
            names.append(name)
            if len(images) == self.chunk:
                yield _chunk(images, labels, names)
                images, labels, names = [], [], []
        if images:
            yield _chunk(images, labels, names)

    def _shuffled(self, shards: list[int], rng: np.random.Generator) -> Iterator[tuple[str, bytes, int]]:
        """The shards' samples through the shuffle buffer. The buffer fills while it yields (two samples
        read for each one given until it holds ``buffer``), so decoding starts after ``SHUFFLE_START``
        samples, not after a whole buffer: an epoch's first batch does not wait for the buffer to fill."""
        samples = (sample for shard in shards for sample in _encoded(self.index, shard))
        if not self.buffer:
            yield from samples
            return
        pool: list[tuple[str, bytes, int]] = []
        start = min(SHUFFLE_START, self.buffer)
        for sample in samples:
            pool.append(sample)
            if len(pool) < self.buffer:
                pool.extend(itertools.islice(samples, 1))
            if len(pool) >= start:
                yield _pop(pool, rng)
        while pool:
            yield _pop(pool, rng)


def _pop(pool: list, rng: np.random.Generator) -> Any:
    """A uniformly drawn item of ``pool``, removed in O(1) (the last one takes its place)."""
    i = int(rng.integers(len(pool)))
    pool[i], pool[-1] = pool[-1], pool[i]
    return pool.pop()


def _chunk(images: list[np.ndarray], labels: list[int], names: list[str]) -> tuple[torch.Tensor, np.ndarray, list]:
    # the labels travel by value: a second tensor would cost a second shared-memory handover per chunk
    return torch.from_numpy(np.stack(images)), np.asarray(labels, dtype=np.int64), names


def _as_made(chunk: Any) -> Any:
    """A chunk as the decoding process made it. The DataLoader's default (``default_convert``) would
    turn the labels' ndarray into a tensor, which travels through shared memory of its own."""
    return chunk


def _worker_init(_: int) -> None:
    """A decoding process's start: one torch thread (Pillow, not torch, does the work), and the objects
    inherited from the training process frozen out of the garbage collector. Unfrozen, the child's
    first full collection walks every one of them (torch's, hundreds of thousands), writing to their
    pages: ~0.2 s per process per epoch and copies of the parent's memory (benchmarks/README.md)."""
    torch.set_num_threads(1)
    gc.freeze()


@contextlib.contextmanager
def _loader(stream: ShardStream, workers: int) -> Iterator[Iterator[tuple[torch.Tensor, np.ndarray, list]]]:
    """The stream's chunks, read by ``workers`` processes (0: this one), stopped on exit."""
    if not workers:
        yield iter(stream)
        return
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2,
        worker_init_fn=_worker_init,
        collate_fn=_as_made,
    )
    it = iter(loader)
    try:
        yield _relayed(it)
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # at once, not whenever the iterator is collected
        if shutdown is not None:
            shutdown()


def _relayed(chunks: Iterator) -> Iterator:
    """``chunks``, with a decoding process's error as one line: the DataLoader re-raises it in this process
    with the worker's whole traceback in its message; the user needs the last line, what went wrong."""
    try:
        yield from chunks
    except DataError as exc:
        last = str(exc).strip().splitlines()[-1]
        raise type(exc)(last.partition(": ")[2] or last) from None


def decoding_workers(requested: int, shards: int) -> int:
    """Decoding processes: ``data.workers`` (0 = one per usable CPU), at most one per shard to read."""
    return max(1, min(requested or usable_cpus(), shards))


# -- pretraining -----------------------------------------------------------------------------


def stream_steps(index: ShardIndex, world: int, per_rank: int) -> int:
    """Optimiser steps per epoch when each of ``world`` ranks reads whole shards, ``per_rank`` images a step.

    Every rank must take the same number of steps whatever shards an epoch deals it, so the
    count is that of the least a rank can get: the smallest ``len(shards) // world`` shards.

    Raises:
        DataError: fewer shards than ranks.
        ConfigError: not one full batch per rank.
    """
    counts = np.sort(index.counts()[index.counts() > 0])
    share = len(counts) // world
    if share == 0:
        raise DataError(
            f"{len(counts)} shard(s) for {world} training processes: each process reads whole shards; "
            "write more, smaller shards (simclr-pipeline make-shards --shard-size)"
        )
    steps = int(counts[:share].sum()) // per_rank
    if steps == 0:
        raise ConfigError(
            f"pretrain.batch_size={per_rank * world}: more than the {int(counts[:share].sum())} images "
            f"the fewest-image rank reads per epoch"
        )
    return steps


def epoch_shards(index: ShardIndex, *, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """The shards rank ``rank`` reads in ``epoch``: every ``world``-th of a shuffled order (disjoint)."""
    order = np.flatnonzero(index.counts() > 0)
    order = order[np.random.default_rng([seed, epoch]).permutation(len(order))]
    return order[rank::world].tolist()


def _batches(chunks: Iterator, size: int, steps: int, pin: bool) -> Iterator[torch.Tensor]:
    """``steps`` uint8 batches of exactly ``size`` images cut from chunks of any size.

    Each batch is a new tensor (pinned for a GPU) that the chunks are copied into once, by numpy: a
    torch copy would run on the intra-op thread pool, whose threads wait on cores the decoding
    processes keep busy (on 2 cores, 8 ms for a 128-image batch at 32 px instead of 0.2 ms).
    """
    made = filled = 0
    batch: torch.Tensor | None = None
    for images, _, _ in chunks:
        rest = images.numpy()
        while len(rest):
            if batch is None:
                batch, filled = torch.empty((size, *rest.shape[1:]), dtype=torch.uint8, pin_memory=pin), 0
            take = min(size - filled, len(rest))
            batch.numpy()[filled : filled + take] = rest[:take]
            filled, rest = filled + take, rest[take:]
            if filled == size:
                yield batch
                batch, made = None, made + 1
                if made == steps:
                    return
    raise DataError(
        f"the shards gave {made} of the {steps} batches of this epoch: images that could not be decoded were "
        "skipped (data.on_bad_image=skip); remove them from the shards"
    )


@dataclass(frozen=True)
class StreamedImages:
    """Pretraining images read from shards each epoch (:class:`kubeclr.core.train.BatchStream`)."""

    index: ShardIndex
    seed: int
    workers: int = 0  # data.workers (0 = one per usable CPU)
    buffer: int = 2048  # data.shuffle_buffer
    pin: bool = False

    def __len__(self) -> int:
        return len(self.index)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.index.image_size, self.index.image_size)

    def steps(self, per_rank: int, world: int) -> int:
        return stream_steps(self.index, world, per_rank)

    @contextlib.contextmanager
    def epoch(
        self, epoch: int, *, rank: int, world: int, per_rank: int, steps: int
    ) -> Iterator[Iterator[torch.Tensor]]:
        """This rank's ``steps`` uint8 batches ``(per_rank, 3, S, S)`` of ``epoch`` (1-based)."""
        mine = epoch_shards(self.index, seed=self.seed, epoch=epoch, rank=rank, world=world)
        workers = decoding_workers(self.workers, len(self.index.counts()[self.index.counts() > 0]) // world)
        chunk = -(-per_rank // workers)  # the DataLoader takes chunks from each process in turn: every batch mixes all
        stream = ShardStream(self.index, mine, seed=(self.seed, epoch, rank), buffer=self.buffer, chunk=chunk)
        with _loader(stream, workers) as chunks:
            yield _batches(chunks, per_rank, steps, self.pin)


# -- evaluation and samples --------------------------------------------------------------------


def ordered_chunks(index: ShardIndex, *, chunk: int, workers: int = 0) -> contextlib.AbstractContextManager[Iterator]:
    """Every sample of ``index`` once, decoded, as ``(images, labels, names)`` chunks, by ``workers``
    processes (``data.workers``; 0 = one per usable CPU) in shard order each (no shuffling)."""
    shards = np.flatnonzero(index.counts() > 0).tolist()
    stream = ShardStream(index, shards, seed=(0,), buffer=0, chunk=chunk)
    return _loader(stream, decoding_workers(workers, len(shards)))


def decode_sample(index: ShardIndex, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of ``count`` samples (all, if fewer), decoded: ``(uint8 (n, 3, S, S), labels)``.

    Shards are taken in a seeded order until they hold ``count`` samples, and the sample is drawn
    among theirs: only those shards are read.
    """
    size = index.image_size
    if count <= 0 or not len(index):
        return np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    counts = index.counts()
    order = rng.permutation(np.flatnonzero(counts > 0))
    taken = order[: int(np.searchsorted(np.cumsum(counts[order]), count)) + 1]
    among = np.flatnonzero(np.isin(index.refs[:, 0], taken))
    picked = index.take(np.sort(rng.choice(among, size=min(count, len(among)), replace=False)))
    images, labels = [], []
    for chunk, chunk_labels, _ in ShardStream(picked, sorted(taken.tolist()), seed=(seed,), buffer=0, chunk=256):
        images.append(chunk.numpy())
        labels.append(chunk_labels)
    if not images:
        return np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(images), np.concatenate(labels)


def first_images(split: Split, count: int, opener: Callable[[str], ShardDir]) -> np.ndarray:
    """Up to ``count`` of a split's images (uint8): its first, or a decoded sample of streamed shards."""
    index = open_index(split, opener)
    return split.images[:count] if index is None else decode_sample(index, count, seed=0)[0]
