"""``make-shards`` into an s3:// prefix on a real SeaweedFS: the objects land under the prefix and nowhere
else, read back as the data step's splits; a prefix that holds objects is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kubeclr.cli import main
from kubeclr.config import Config
from kubeclr.steps.download_split import read_dataset
from tests.cifar_fixtures import make_cifar_tarball

pytestmark = pytest.mark.integration


def test_shards_are_uploaded_under_the_prefix_and_read_back(s3_server, tmp_path, capsys):
    tarball = tmp_path / "c.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    dest = s3_server.uri("datasets/c10/")
    assert main(["make-shards", str(tarball), dest, "--shard-size", "20KB", "--no-shuffle"]) == 0
    assert dest.rstrip("/") in capsys.readouterr().out

    client = s3_server.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_server.bucket).get("Contents", []))
    assert all(k.startswith("datasets/c10/") and k.count("/") == 2 for k in keys), keys
    names = [k.rpartition("/")[2] for k in keys]
    assert "classes.txt" in names and "train-000001.tar" in names and "test-000000.tar" in names

    source, _ = read_dataset(Config().override({"data.source": str(tarball), "data.md5": "none"}))
    shards, _ = read_dataset(
        Config().override({"data.format": "webdataset", "data.source": dest, "data.image_size": 32})
    )
    for split in ("train", "val", "test"):
        a, b = getattr(source, split), getattr(shards, split)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels), split
    assert shards.class_names == source.class_names

    assert main(["make-shards", str(tarball), dest]) == 2  # never mixed with the shards already there
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: DEST") and "refusing to overwrite" in err and len(err.splitlines()) == 1
    assert len(client.list_objects_v2(Bucket=s3_server.bucket)["Contents"]) == len(keys)


def test_shards_stream_from_s3_with_every_image_once_and_a_changed_object_refused(s3_server, tmp_path):
    """data.stream=true on an s3:// prefix: the data step indexes the objects as streams (nothing downloaded),
    the decoding processes read them again (each its own client), every image once an epoch."""
    from kubeclr.data.files import load_split
    from kubeclr.data.stream import StreamedImages, decode_sample, open_index
    from kubeclr.errors import DataError
    from kubeclr.steps import download_split
    from kubeclr.storage.folders import shard_dir

    tarball = tmp_path / "c.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    dest = s3_server.uri("stream/c10/")
    assert main(["make-shards", str(tarball), dest, "--shard-size", "20KB"]) == 0
    cfg = Config().override(
        {"data.format": "webdataset", "data.source": dest, "data.stream": True, "data.image_size": 32}
    )
    outs = [tmp_path / f"{s}.npz" for s in ("train", "val", "test")]
    facts = download_split.run(cfg, *outs)
    assert facts["streamed"] and facts["train_size"] == 40 and not list(tmp_path.glob("kubeclr-shards-*"))

    index = open_index(load_split(outs[0]), shard_dir)
    resident, _ = read_dataset(Config().override({"data.source": str(tarball), "data.md5": "none"}))
    images = StreamedImages(index, seed=0, workers=2, buffer=8)
    with images.epoch(1, rank=0, world=1, per_rank=8, steps=images.steps(8, 1)) as batches:
        seen = torch.cat(list(batches))
    assert len(seen) == 40 and len({bytes(x.numpy()) for x in seen}) == 40
    assert {bytes(x) for x in seen.numpy()} == {bytes(x) for x in resident.train.images}

    s3_server.client().put_object(Bucket=s3_server.bucket, Key="stream/c10/train-000000.tar", Body=b"\0" * 1024)
    with pytest.raises(DataError, match="train-000000.tar"):
        decode_sample(index, 40, seed=0)
