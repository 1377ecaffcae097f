"""WebDataset shards as a user makes and uses them: real scans (scikit-learn's digits) as an image folder,
``make-shards``, then ``run --local --set data.format=webdataset``: the same splits, the same result as the
run on the folder itself."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_cli import run

TINY = ["pretrain.epochs=2", "pretrain.batch_size=32", "model.width=4", "eval.tsne_points=0", "data.image_size=16"]
TINY += ["data.train_limit=0", "data.val_limit=0", "data.test_limit=0"]


def _digits_folder(root: Path, n: int = 400) -> Path:
    """``n`` digit scans as ``train/<digit>/`` (first 3/4) and ``test/<digit>/`` PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(n):
        split = "train" if i < 3 * n // 4 else "test"
        path = root / split / str(digits.target[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        scan = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(scan).resize((16, 16), Image.NEAREST).convert("RGB").save(path)
    return root


def _local(tmp_path: Path, name: str, source: Path, fmt: str):
    args = ["run", "--local", "--preset", "smoke", "--data-source", str(source), "--data-md5", "none"]
    for s in (f"data.format={fmt}", *TINY):
        args += ["--set", s]
    proc = run(*args, "--output-dir", str(tmp_path / name), "--run-name", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.e2e
def test_digits_through_shards_train_like_the_folder_they_came_from(tmp_path):
    folder = _digits_folder(tmp_path / "digits")
    shards = tmp_path / "shards"
    made = run("make-shards", str(folder), str(shards), "--format", "imagefolder", "--image-size", "16")
    assert made.returncode == 0, made.stderr[-3000:]
    names = sorted(p.name for p in shards.iterdir())
    assert "classes.txt" in names and any(n.startswith("train-") for n in names)
    with tarfile.open(next(shards.glob("train-*.tar"))) as tar:  # readable by any tar reader, regular files
        assert all(m.isreg() for m in tar.getmembers())

    from_folder = _local(tmp_path, "folder", folder, "imagefolder")
    from_shards = _local(tmp_path, "shards-run", shards, "webdataset")
    a, b = from_folder["dataset"], from_shards["dataset"]
    assert (a["train_size"], a["val_size"], a["test_size"]) == (b["train_size"], b["val_size"], b["test_size"])
    assert b["format"] == "webdataset" and b["manifest_sha256"]
    # the same images in the same order: the run on shards learns what the run on the folder learns
    for block in ("linear_eval", "knn"):
        assert abs(from_folder[block]["test_top1"] - from_shards[block]["test_top1"]) <= 0.02, block
