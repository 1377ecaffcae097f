"""Streamed shards (``data.stream``): the index the data step writes, and what pretraining and evaluation read.

Shards are built by hand (tests/unit/test_shards.py's helpers); every image carries its own red value,
so what a stream hands over can be counted image by image."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kubeclr.config import Config
from kubeclr.core import train
from kubeclr.data import stream
from kubeclr.data.files import load_split
from kubeclr.data.shards import expand_braces
from kubeclr.errors import ConfigError, DataError
from kubeclr.steps import compute_stats, download_split
from kubeclr.storage.folders import shard_dir
from kubeclr.storage.store import LocalStore
from tests.unit.test_shards import _cfg, _one_bad, _png, _tar
from tests.unit.test_train import CPU, MEAN, STD, Interrupt, InterruptAfter, Recorder, tiny_config

SHARDS, PER_SHARD = 8, 12  # train: 96 labelled images in 8 shards


def _samples(prefix: str, values: list[int], labels: list[int] | None) -> list[tuple[str, bytes]]:
    """As tests/unit/test_shards.py's, with every channel varying (the statistics divide by each std)."""
    out = []
    for i, v in enumerate(values):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (v, 255 - v, (3 * v) % 256)).save(buf, format="PNG")
        out.append((f"{prefix}/{i:05d}.png", buf.getvalue()))
        if labels is not None:
            out.append((f"{prefix}/{i:05d}.cls", str(labels[i]).encode()))
    return out


def _dataset(root: Path, *, unlabeled: int = 0) -> Path:
    """8 train shards of 12 images (red = 0 … 95 × 2), 2 test shards of 10, classes.txt; optional unlabelled."""
    root.mkdir()
    for s in range(SHARDS):
        values = [2 * (s * PER_SHARD + i) for i in range(PER_SHARD)]
        _tar(root / f"train-{s:06d}.tar", _samples(f"t{s}", values, [v % 4 for v in values]))
    for s in range(2):
        values = [1 + 2 * (s * 10 + i) for i in range(10)]  # odd reds: apart from train
        _tar(root / f"test-{s:06d}.tar", _samples(f"e{s}", values, [v % 4 for v in values]))
    if unlabeled:
        _tar(root / "unlabeled-000000.tar", _samples("u", [201 + i for i in range(unlabeled)], None))
    (root / "classes.txt").write_text("a\nb\nc\nd\n")
    return root


def _streamed(tmp_path: Path, root: Path | str, **data) -> dict[str, Path]:
    cfg = _cfg(stream=True, source=str(root), val_fraction=0.25, **data)
    outs = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    download_split.run(cfg, outs["train"], outs["val"], outs["test"], tmp_path / "manifest.json")
    return outs


def _index(path: Path) -> stream.ShardIndex:
    return stream.open_index(load_split(path), shard_dir)


def _reds(images: torch.Tensor | np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(images)[:, 0, 0, 0]]


def test_the_index_holds_addresses_and_digests_not_pixels_and_picks_the_resident_splits(tmp_path):
    import hashlib

    root = _dataset(tmp_path / "shards", unlabeled=5)
    outs = _streamed(tmp_path, root)
    resident = download_split.read_dataset(_cfg(source=str(root), val_fraction=0.25))[0]
    train_split = load_split(outs["train"], unlabeled=True)
    assert train_split.images.shape == (0, 3, 8, 8) and train_split.refs.shape == (len(resident.train.labels), 2)
    meta = train_split.meta["stream"]
    for shard in meta["shards"]:  # each shard's SHA-256 as a file, read once
        assert shard["sha256"] == hashlib.sha256((root / shard["name"]).read_bytes()).hexdigest()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["streamed"] and set(manifest["files"]) == {s["name"] for s in meta["shards"]}
    for name in ("train", "val", "test"):  # the same images in each split as the resident path decodes
        index = _index(outs[name])
        images, labels = stream.decode_sample(index, 10_000, seed=0)
        want = getattr(resident, name)
        assert sorted(_reds(images)) == sorted(_reds(want.images)), name
        assert sorted(zip(_reds(images), labels.tolist())) == sorted(zip(_reds(want.images), want.labels.tolist()))
    pretraining = stream.open_index(train_split, shard_dir, unlabeled=True)
    assert len(pretraining) == len(resident.train.labels) + 5 and (pretraining.labels[-5:] == -1).all()


def test_every_image_once_an_epoch_ranks_disjoint_and_the_order_a_function_of_the_epoch(tmp_path):
    index = _index(_streamed(tmp_path, _dataset(tmp_path / "shards"))["train"])
    everyone = sorted(_reds(stream.decode_sample(index, 10_000, seed=0)[0]))

    def epoch(e: int, rank: int = 0, world: int = 1, workers: int = 2) -> list[int]:
        imgs = stream.StreamedImages(index, seed=3, workers=workers, buffer=16)
        mine = stream.epoch_shards(index, seed=3, epoch=e, rank=rank, world=world)
        seen = []
        with stream._loader(stream.ShardStream(index, mine, seed=(3, e, rank), buffer=16, chunk=5), workers) as it:
            for chunk, _, _ in it:
                seen += _reds(chunk)
        assert imgs.steps(per_rank=8, world=world) == stream.stream_steps(index, world, 8)
        return seen

    one = epoch(1)
    assert sorted(one) == everyone  # every image exactly once (counted by image)
    assert epoch(1) == one and epoch(1, workers=0) != one  # the same epoch, the same order
    assert epoch(2) != one and sorted(epoch(2)) == everyone
    ranks = [epoch(1, rank=r, world=2) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == everyone
    shards = [stream.epoch_shards(index, seed=3, epoch=1, rank=r, world=2) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1])


def test_decoding_processes_are_one_per_usable_cpu_and_at_most_one_per_shard(monkeypatch):
    monkeypatch.setattr(stream, "usable_cpus", lambda: 3)  # a pod's 3 CPUs, whatever the node has
    assert [stream.decoding_workers(0, shards) for shards in (10, 2)] == [3, 2]
    assert [stream.decoding_workers(5, shards) for shards in (10, 2)] == [5, 2]  # data.workers, as asked


def test_chunks_cross_from_a_decoding_process_as_made(tmp_path):
    """Images in a tensor (shared memory), labels and names by value: the DataLoader's default would
    make the labels a second tensor, a second shared-memory handover per chunk."""
    index = _index(_streamed(tmp_path, _dataset(tmp_path / "shards"))["train"])
    shards = np.flatnonzero(index.counts() > 0).tolist()
    for workers in (0, 1):
        with stream._loader(stream.ShardStream(index, shards, seed=(0,), buffer=0, chunk=4), workers) as chunks:
            images, labels, names = next(iter(chunks))
        assert isinstance(images, torch.Tensor) and images.dtype == torch.uint8
        assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and len(labels) == len(images)
        assert isinstance(names, list) and len(names) == len(images)


@pytest.mark.parametrize("buffer", [1, 16, 1000])
def test_the_shuffle_buffer_yields_early_holds_at_most_its_size_and_loses_nothing(monkeypatch, buffer):
    read = []

    def encoded(_index, shard):
        for i in range(300):
            read.append((shard, i))
            yield f"{shard}:{i}", b"", 0

    monkeypatch.setattr(stream, "_encoded", encoded)
    shuffler = stream.ShardStream(None, [0, 1], seed=(0,), buffer=buffer, chunk=1)
    out, held = [], []
    for name, _, _ in shuffler._shuffled([0, 1], np.random.default_rng(0)):
        out.append(name)
        held.append(len(read) - len(out) + 1)  # samples in the pool when this one was drawn
    assert sorted(out) == sorted(f"{s}:{i}" for s in (0, 1) for i in range(300))
    assert max(held) <= buffer and held[0] <= min(buffer, stream.SHUFFLE_START)  # the first waits for 100 at most
    assert buffer == 1 or out != sorted(out, key=lambda n: tuple(map(int, n.split(":"))))


def test_batches_have_a_fixed_shape_and_steps_are_what_every_rank_can_take(tmp_path):
    index = _index(_streamed(tmp_path, _dataset(tmp_path / "shards"))["train"])
    counts = sorted(index.counts()[index.counts() > 0].tolist())
    imgs = stream.StreamedImages(index, seed=0, workers=1, buffer=0)
    steps = imgs.steps(per_rank=10, world=1)
    assert steps == sum(counts) // 10
    with imgs.epoch(1, rank=0, world=1, per_rank=10, steps=steps) as batches:
        got = list(batches)
    assert len(got) == steps and all(b.shape == (10, 3, 8, 8) and b.dtype == torch.uint8 for b in got)
    assert stream.stream_steps(index, 3, 4) == sum(counts[: len(counts) // 3]) // 4  # the fewest a rank can get
    with pytest.raises(DataError, match=r"\d+ shard\(s\) for 99 training processes: each process reads whole shards"):
        stream.stream_steps(index, 99, 4)


def test_batches_are_the_chunks_images_in_order_each_in_its_own_tensor():
    images = torch.arange(23 * 3, dtype=torch.uint8).reshape(23, 3, 1, 1)
    cuts = [0, 4, 5, 11, 20, 23]  # chunks of 4, 1, 6, 9, 3 images
    chunks = [(images[a:b], np.zeros(b - a, np.int64), []) for a, b in zip(cuts, cuts[1:])]
    got = list(stream._batches(iter(chunks), size=7, steps=3, pin=False))
    assert [b.shape for b in got] == [(7, 3, 1, 1)] * 3
    assert torch.equal(torch.cat(got), images[:21])  # in order, the last 2 images left over
    assert len({b.untyped_storage().data_ptr() for b in got} | {images.untyped_storage().data_ptr()}) == 4
    with pytest.raises(DataError, match="the shards gave 3 of the 4 batches of this epoch"):
        list(stream._batches(iter(chunks), size=7, steps=4, pin=False))


def test_a_shard_changed_after_indexing_fails_by_name(tmp_path):
    root = _dataset(tmp_path / "shards")
    index = _index(_streamed(tmp_path, root)["test"])
    _tar(root / "test-000001.tar", _samples("e1", [77] * 10, [0] * 10))
    changed = "shard test-000001.tar: its SHA-256 is not the one the data step indexed"
    with pytest.raises(DataError, match=changed), stream.ordered_chunks(index, chunk=4, workers=1) as chunks:
        list(chunks)


@pytest.mark.parametrize(
    "members, message",
    [
        ([("bad/00001.cls", b"1")], "key bad/00001: no image"),
        ([("bad/00001.png", _png(1)), ("bad/00001.cls", b"dog")], "cls is 'dog', not a class index"),
        ([("bad/00001.png", b"\x89PNG not really"), ("bad/00001.cls", b"1")], "train-000009.tar:bad/00001"),
    ],
)
def test_indexing_refuses_or_skips_what_ingestion_refuses(tmp_path, members, message):
    root = _one_bad(tmp_path, members)
    with pytest.raises(DataError, match="train-000009.tar") as err:
        _streamed(tmp_path, root)
    assert message in str(err.value)
    outs = _streamed(tmp_path, root, on_bad_image="skip")
    assert json.loads((tmp_path / "manifest.json").read_text())["skipped_images"] == 1
    assert not (tmp_path / "train.npz").with_suffix(".npz.tmp").exists() and outs["train"].exists()


def test_a_link_member_and_a_truncated_shard_are_refused_by_name(tmp_path):
    root = _one_bad(tmp_path, [], links={"bad/00001.png": "/etc/passwd"})
    with pytest.raises(DataError, match="member bad/00001.png: not a regular file"):
        _streamed(tmp_path, root)
    cut = _dataset(tmp_path / "cut")
    data = (cut / "train-000003.tar").read_bytes()
    (cut / "train-000003.tar").write_bytes(data[: len(data) // 2 + 100])
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="shard train-000003.tar: truncated|member .* the shard is truncated"):
        _streamed(tmp_path / "c", cut)
    assert not list((tmp_path / "c").iterdir())  # a refused dataset leaves nothing behind


def test_statistics_of_streamed_shards_are_those_of_the_images(tmp_path):
    outs = _streamed(tmp_path, _dataset(tmp_path / "shards"))
    stats = compute_stats.run(Config(), outs["train"], tmp_path / "stats.json")
    images = stream.decode_sample(_index(outs["train"]), 10_000, 0)[0] / 255.0
    assert stats["count"] == len(images) == stats["sampled_from"]
    assert np.allclose(stats["mean"], images.mean(axis=(0, 2, 3)), atol=1e-9)


def test_pretraining_on_a_stream_resumes_exactly_at_an_epoch_boundary(tmp_path):
    index = _index(_streamed(tmp_path, _dataset(tmp_path / "shards"))["train"])
    cfg = tiny_config(**{"augment.size": 8})
    images = stream.StreamedImages(index, seed=cfg.pretrain.seed, workers=1, buffer=8)
    full = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=LocalStore(tmp_path / "a"))
    store = LocalStore(tmp_path / "b")
    with pytest.raises(Interrupt):
        train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, callbacks=InterruptAfter(2))
    rec = Recorder()
    resumed = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, callbacks=rec)
    assert rec.start["start_epoch"] == 2 and rec.epochs == [3] and rec.steps == 72 // 16  # 96 images, 24 of them val
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]


def test_stream_needs_shards_and_feature_evaluation():
    with pytest.raises(ConfigError, match="data.stream=true streams WebDataset shards; data.format is imagefolder"):
        Config().override({"data.format": "imagefolder", "data.source": "/x", "data.stream": True})
    with pytest.raises(ConfigError, match="eval.protocol=crops trains on the decoded images"):
        _cfg(stream=True).override({"eval.protocol": "crops"})


def test_brace_and_glob_patterns_select_shards(tmp_path):
    assert expand_braces("train-{008..010}.tar") == ["train-008.tar", "train-009.tar", "train-010.tar"]
    assert expand_braces("{train,test}-{0..1}.tar") == ["train-0.tar", "train-1.tar", "test-0.tar", "test-1.tar"]
    root = _dataset(tmp_path / "shards")
    picked = shard_dir(f"{root}/{{train-{{000000..000002}},test-*}}.tar")
    assert picked.names() == ["test-000000.tar", "test-000001.tar"] + [f"train-00000{i}.tar" for i in range(3)]
    assert picked.text("classes.txt") == "a\nb\nc\nd\n"
    outs = _streamed(tmp_path, f"{root}/*-00000[01].tar")
    assert len(load_split(outs["train"])) + len(load_split(outs["val"])) == 2 * PER_SHARD
    with pytest.raises(DataError, match="no file matches the pattern"):
        shard_dir(f"{root}/nothing-*.tar").names()


def test_a_multi_node_stream_needs_shards_every_pod_can_reach():
    from kubeclr.launch.engines import choose_engine
    from kubeclr.launch.settings import LaunchSettings

    with pytest.raises(ConfigError, match="every pod reads the shards itself, so data.source must be an s3://"):
        choose_engine(_cfg(stream=True, source="/data/shards"), nodes=2, gpus=1, settings=LaunchSettings())
    engine = choose_engine(_cfg(stream=True, source="s3://bucket/shards/"), nodes=2, gpus=1, settings=LaunchSettings())
    assert engine.name


def test_a_decoding_process_error_reaches_the_user_as_one_line(tmp_path):
    root = _dataset(tmp_path / "shards")
    index = _index(_streamed(tmp_path, root)["test"])
    _tar(root / "test-000000.tar", _samples("e0", [5] * 10, [0] * 10))
    with pytest.raises(DataError) as err, stream.ordered_chunks(index, chunk=4, workers=2) as chunks:
        list(chunks)
    assert str(err.value).startswith("shard test-000000.tar: its SHA-256") and "\n" not in str(err.value)
