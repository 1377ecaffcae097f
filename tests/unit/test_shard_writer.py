"""``make-shards`` and its writer: shards any WebDataset tool reads, decoding to exactly the data step's splits;
the size bound; a dataset without labels; one-line refusals that leave nothing behind."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubeclr.cli import main
from kubeclr.config import Config
from kubeclr.data.cifar import Batch
from kubeclr.data.formats import Splits
from kubeclr.data.shard_writer import closed_size, parse_size, write_shards
from kubeclr.errors import UserError
from kubeclr.steps.download_split import read_dataset
from tests.cifar_fixtures import CLASS_NAMES, make_cifar_tarball
from tests.dataset_fixtures import coded_color, write_coded_images

CLI = [sys.executable, "-m", "kubeclr.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def _members(shard: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(shard) as tar:  # any tar reader: here Python's, random access
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def _samples(root: Path, prefix: str) -> list[dict[str, bytes]]:
    """Every sample of ``prefix``'s shards, in shard then member order: ``{extension: bytes}``."""
    out: dict[str, dict[str, bytes]] = {}
    for shard in sorted(root.glob(f"{prefix}-*.tar")):
        for info, data in _members(shard):
            key, _, ext = info.name.partition(".")
            out.setdefault(key, {})[ext] = data
    return list(out.values())


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).transpose(2, 0, 1)  # (3, S, S)


def test_a_cifar_tarball_becomes_shards_that_decode_to_the_data_steps_splits(tmp_path):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    dest = tmp_path / "shards"
    proc = _cli("make-shards", str(tarball), str(dest), "--format", "cifar10", "--no-shuffle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(dest) in proc.stdout and "train" in proc.stdout and "classes.txt: 10 classes" in proc.stdout

    files = sorted(p.name for p in dest.iterdir())
    assert files == ["classes.txt", "test-000000.tar", "train-000000.tar", "val-000000.tar"]
    assert tuple((dest / "classes.txt").read_text().splitlines()) == CLASS_NAMES
    splits, _ = read_dataset(Config().override({"data.source": str(tarball), "data.md5": "none"}))
    for prefix in ("train", "val", "test"):
        members = _members(dest / f"{prefix}-000000.tar")
        names = [m.name for m, _ in members]
        assert names == sorted(names) and names[:2] == [f"{prefix}/00000000.cls", f"{prefix}/00000000.png"]
        for m, _ in members:
            assert m.isreg() and (m.mode, m.mtime, m.uid, m.gid, m.uname) == (0o644, 0, 0, 0, ""), m.name
        batch = getattr(splits, prefix)
        samples = _samples(dest, prefix)
        assert len(samples) == len(batch.labels) > 0
        for i, sample in enumerate(samples):
            assert np.array_equal(_pixels(sample["png"]), batch.images[i]), (prefix, i)
            assert sample["cls"] == str(batch.labels[i]).encode()

    shuffled = tmp_path / "shuffled"  # the default: the same samples, in a seeded order (shards mix classes)
    assert _cli("make-shards", str(tarball), str(shuffled), "--format", "cifar10").returncode == 0
    for prefix in ("train", "val", "test"):
        plain = [(s["png"], s["cls"]) for s in _samples(dest, prefix)]
        mixed = [(s["png"], s["cls"]) for s in _samples(shuffled, prefix)]
        assert sorted(mixed) == sorted(plain) and (mixed != plain or len(plain) < 3), prefix


def _noise(side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, side, side), dtype=np.uint8)


def test_a_small_shard_size_makes_several_shards_none_over_it_but_a_lone_larger_sample(tmp_path):
    side, n = 64, 30
    images = np.zeros((n, 3, side, side), dtype=np.uint8)
    images[:] = np.arange(n, dtype=np.uint8)[:, None, None, None]  # solid: a few hundred bytes of PNG each
    images[7] = _noise(side, 0)  # ~12 KB of PNG: more than the bound by itself
    train = Batch(images=images, labels=np.arange(n, dtype=np.int64) % 3)
    test = Batch(images=images[:4], labels=np.zeros(4, dtype=np.int64))
    empty = Batch(images=images[:0], labels=train.labels[:0])
    splits = Splits(train, empty, test, images[:0], ("a", "b", "c"))
    bound = 12_000

    summary = write_shards(splits, tmp_path / "a", shard_bytes=bound, shuffle_seed=None)
    shards = sorted((tmp_path / "a").glob("train-*.tar"))
    assert len(shards) >= 3 and summary["splits"]["train"]["shards"] == len(shards)
    assert "val" not in summary["splits"]  # no images, no shards
    lone = []
    for shard in shards:
        members = _members(shard)
        assert shard.stat().st_size == closed_size(max(m.offset_data + m.size for m, _ in members))
        if shard.stat().st_size > bound:
            assert len(members) == 2, shard.name  # one sample (png + cls): larger than the bound alone
            lone.append(members[0][0].name.split(".")[0])
    assert lone == ["train/00000007"]
    decoded = [_pixels(s["png"]) for s in _samples(tmp_path / "a", "train")]
    assert np.array_equal(np.stack(decoded), images)  # in order, across shard boundaries

    write_shards(splits, tmp_path / "b", shard_bytes=bound, shuffle_seed=None)  # deterministic: byte-identical
    for name in summary["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_an_image_folder_without_labels_becomes_unlabeled_shards_read_back_the_same(tmp_path):
    codes = write_coded_images(tmp_path / "photos", [f"unlabeled/{i:02d}.png" for i in range(10)])
    dest = tmp_path / "shards"
    proc = _cli("make-shards", str(tmp_path / "photos"), str(dest), "--image-size", "8", "--no-shuffle")  # a folder
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no labels" in proc.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["unlabeled-000000.tar"]
    samples = _samples(dest, "unlabeled")
    assert all(set(s) == {"png"} for s in samples)
    reds = [int(_pixels(s["png"])[0, 0, 0]) for s in samples]
    assert reds == sorted(codes.values())  # every image, held-out slice included, in the folder's order
    assert all(np.array_equal(_pixels(s["png"])[:, 0, 0], coded_color(r)) for s, r in zip(samples, reds))

    # read as shards, the same images are held out as from the folder
    base = {"data.image_size": 8, "data.md5": "none"}
    folder, _ = read_dataset(
        Config().override({**base, "data.format": "imagefolder", "data.source": str(tmp_path / "photos")})
    )
    shards, _ = read_dataset(Config().override({**base, "data.format": "webdataset", "data.source": str(dest)}))
    assert np.array_equal(folder.test.images, shards.test.images) and len(shards.test.images) == 5
    assert np.array_equal(folder.unlabeled, shards.unlabeled)


@pytest.mark.parametrize(
    "text, expected",
    [("256MB", 256 * 10**6), ("1GB", 10**9), ("500KB", 500_000), ("64MiB", 64 * 2**20), ("1.5 gb", 1_500_000_000)]
    + [("123456", 123_456), ("1KB", 1000)],
)
def test_sizes_parse_in_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "12XB", "1e6", "-5MB", "999", "0.5KB", "256 M B"])
def test_a_bad_or_tiny_size_is_refused(text):
    with pytest.raises(UserError, match="shard size"):
        parse_size(text)


def _refused(capsys, args: list[str], fragment: str) -> None:
    assert main(["make-shards", *args]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err and "wrote" not in out


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    tarball = tmp_path / "c.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    _refused(capsys, [str(tarball), str(full)], "exists and is not empty; refusing to overwrite")
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    new = tmp_path / "new"
    _refused(capsys, [str(tarball), str(new), "--shard-size", "12XB"], "--shard-size '12XB': expected a size")
    _refused(capsys, [str(tarball), str(new), "--shard-size", "100"], "a shard needs at least 1KB")
    _refused(capsys, [str(tmp_path / "nothing.tar.gz"), str(new)], "no such file")
    _refused(capsys, [str(tarball), str(new), "--image-size", "-3"], "data.image_size")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz", "full"]


def test_a_failure_while_writing_leaves_no_dest_and_no_staging_folder(tmp_path, capsys, monkeypatch):
    from kubeclr.data import shard_writer

    tarball = tmp_path / "c.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    calls = []

    def failing(image):
        calls.append(1)
        if len(calls) > 30:  # after train's first shard has been written
            raise UserError("disk full (simulated)")
        return encode(image)

    encode = shard_writer.encode_png
    monkeypatch.setattr(shard_writer, "encode_png", failing)
    _refused(capsys, [str(tarball), str(tmp_path / "out" / "shards"), "--shard-size", "20KB"], "disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz", "out"]
    assert list((tmp_path / "out").iterdir()) == []  # neither DEST nor the staging folder next to it
