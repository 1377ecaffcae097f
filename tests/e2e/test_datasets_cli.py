"""Every dataset format through ``run --local``, on small files in the real layouts, and a hostile folder."""

from __future__ import annotations

import json

import pytest
import torch

from tests.dataset_fixtures import bomb_png, make_cifar100_tarball, make_stl10_tarball, pack_folder, write_image_folder
from tests.e2e.test_cli import _check_outputs, run

TINY = ["pretrain.epochs=1", "pretrain.batch_size=16", "model.width=4", "eval.tsne_points=20", "eval.knn_k=5"]


def _run_local(tmp_path, source: str, *sets: str, name: str):
    args = ["run", "--local", "--preset", "smoke", "--cifar-source", source, "--cifar-md5", "none"]
    for s in (*TINY, "data.train_limit=0", "data.val_limit=0", "data.test_limit=0", *sets):
        args += ["--set", s]
    return run(*args, "--output-dir", str(tmp_path / "out"), "--run-name", name)


@pytest.mark.e2e
def test_cifar100_coarse_labels(tmp_path):
    src = tmp_path / "cifar-100-python.tar.gz"
    make_cifar100_tarball(src, train=120, test=40)
    proc = _run_local(tmp_path, str(src), "data.format=cifar100", "data.cifar100_labels=coarse", name="c100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _check_outputs(tmp_path / "out", "c100")
    ds = metrics["dataset"]
    assert (ds["format"], ds["train_size"] + ds["val_size"], ds["test_size"], ds["unlabeled_size"]) == (
        "cifar100",
        120,
        40,
        0,
    )
    assert metrics["config"]["data"]["cifar100_labels"] == "coarse"


@pytest.mark.e2e
def test_stl10_at_96_px_pretrains_on_unlabelled_images_too(tmp_path):
    src = tmp_path / "stl10_binary.tar.gz"
    make_stl10_tarball(src, train=30, test=20, unlabeled=40)
    proc = _run_local(tmp_path, str(src), "data.format=stl10", "model.stem=cifar_s2", name="stl")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _check_outputs(tmp_path / "out", "stl")
    ds = metrics["dataset"]
    assert (ds["image_size"], ds["unlabeled_size"], ds["train_size"], ds["val_size"], ds["test_size"]) == (
        96,
        40,
        24,
        6,
        20,
    )
    report = (tmp_path / "out" / "report.md").read_text()
    assert "pretraining 64 (24 labelled + 40 unlabelled)" in report
    assert "96 px" in (tmp_path / "out" / "report.html").read_text()
    assert "pretraining on 64 images: 24 labelled + 40 unlabelled" in proc.stderr + proc.stdout


@pytest.mark.e2e
def test_an_image_folder_zip_with_every_kind_of_image(tmp_path):
    write_image_folder(tmp_path / "src", train=8, test=4, val=2, unlabeled=6)
    (tmp_path / "src" / "train" / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # ignored
    archive = pack_folder(tmp_path / "src", tmp_path / "pets.zip", prefix="pets/")
    proc = _run_local(tmp_path, str(archive), "data.format=imagefolder", "data.image_size=32", name="zip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _check_outputs(tmp_path / "out", "zip")
    ds = metrics["dataset"]
    assert (ds["train_size"], ds["val_size"], ds["test_size"], ds["unlabeled_size"]) == (24, 6, 12, 6)
    assert ds["synthetic"] is False and len(ds["manifest_sha256"]) == 64
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]["data"]["format"] == "imagefolder"


@pytest.mark.e2e
def test_the_sample_folder_demo(tmp_path):
    proc = _run_local(tmp_path, "sample-folder", "data.sample_per_class=12", "data.image_size=32", name="sf")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _check_outputs(tmp_path / "out", "sf")
    assert metrics["dataset"]["synthetic"] is True and metrics["dataset"]["unlabeled_size"] == 60
    assert torch.load(tmp_path / "out" / "encoder.pt", weights_only=True)


@pytest.mark.e2e
@pytest.mark.parametrize("skip", [False, True])
def test_a_decompression_bomb_fails_by_name_or_is_skipped_and_reported(tmp_path, skip):
    root = tmp_path / "pets"
    write_image_folder(root, train=8, test=3)
    (root / "train" / "dog" / "bomb.png").write_bytes(bomb_png())
    sets = ["data.format=imagefolder", "data.image_size=16"]
    proc = _run_local(tmp_path, str(root), *sets, *(["data.on_bad_image=skip"] if skip else []), name="bomb")
    if not skip:
        assert proc.returncode == 2
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: local run failed: download_split: train/dog/bomb.png: declares 60000x60000")
        assert not (tmp_path / "out" / "metrics.json").exists()
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _check_outputs(tmp_path / "out", "bomb")
    assert metrics["dataset"]["skipped_images"] == 1
    assert "1 bad images skipped" in (tmp_path / "out" / "report.md").read_text()
