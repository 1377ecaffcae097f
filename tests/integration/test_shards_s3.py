"""``make-shards`` into an s3:// prefix on a real SeaweedFS: the objects land under the prefix and nowhere
else, read back as the data step's splits; a prefix that holds objects is refused."""

from __future__ import annotations

import numpy as np
import pytest

from kubeclr.cli import main
from kubeclr.config import Config
from kubeclr.steps.download_split import read_dataset
from tests.cifar_fixtures import make_cifar_tarball

pytestmark = pytest.mark.integration


def test_shards_are_uploaded_under_the_prefix_and_read_back(s3_server, tmp_path, capsys):
    tarball = tmp_path / "c.tar.gz"
    make_cifar_tarball(tarball, per_batch=10)
    dest = s3_server.uri("datasets/c10/")
    assert main(["make-shards", str(tarball), dest, "--shard-size", "20KB"]) == 0
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
