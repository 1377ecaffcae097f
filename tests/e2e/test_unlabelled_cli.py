"""Data without labels, end to end through ``run --local``: the digits as an ``unlabeled/``-only folder and
as a flat folder of images. Pretraining, the label-free measures, the export and the report run; nothing
claims an accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_cli import run

TINY = ["pretrain.epochs=2", "pretrain.batch_size=32", "model.width=4", "eval.tsne_points=30", "pretrain.knn_every=1"]
TINY += ["data.train_limit=0", "data.val_limit=0", "data.test_limit=0", "data.image_size=32"]


def _digits(n: int) -> list[Image.Image]:
    """``n`` of scikit-learn's scanned digits (real scans, 8x8, 16 grey levels) as 32 px RGB images."""
    from sklearn.datasets import load_digits

    scans = (load_digits().images[:n] * 255 / 16).astype(np.uint8)  # (n, 8, 8)
    return [Image.fromarray(s).resize((32, 32), Image.NEAREST).convert("RGB") for s in scans]


def _write(folder: Path, images: list[Image.Image], *, nested: bool = False) -> Path:
    for i, img in enumerate(images):
        path = folder / (f"batch{i % 3}" if nested else "") / f"scan{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
    return folder


def _run_unlabelled(tmp_path: Path, source: Path, name: str):
    args = ["run", "--local", "--preset", "smoke", "--data-source", str(source), "--data-md5", "none"]
    for s in ("data.format=imagefolder", *TINY):
        args += ["--set", s]
    return run(*args, "--output-dir", str(tmp_path / "out"), "--run-name", name)


def _check_unlabelled(out: Path, n: int) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    from kubeclr.report.metrics import validate_metrics

    validate_metrics(metrics)
    ds = metrics["dataset"]
    assert ds["labelled"] is False and ds["train_size"] == 0 and ds["val_size"] == 0
    assert ds["unlabeled_size"] + ds["test_size"] == n and ds["test_size"] >= min(256, n // 2)
    assert metrics["linear_eval"] is None and metrics["knn"] is None  # never a made-up accuracy
    rep = metrics["representation"]
    assert rep["n_images"] == ds["test_size"] and 1.0 <= rep["rankme"] <= rep["feature_dim"]
    pre = metrics["pretrain"]
    assert pre["knn_top1_init"] is None and pre["rankme_init"] >= 1.0  # the label-free monitor, from epoch 0
    assert pre["health"]["status"] in ("healthy", "slow-start", "not-learning", "collapsing")
    card = json.loads((out / "model.json").read_text())
    assert card["classifier"] is None and card["metrics"] is None and card["labelled"] is False
    assert (out / "encoder.onnx").is_file() and not (out / "classifier.onnx").exists()
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "This run had no labels" in html and "This run had no labels" in md
    assert "Representation (label-free)" in html and "Confusion matrix" not in html and "linear test top-1" not in html
    assert "t-SNE of" in html  # uncoloured
    return metrics


@pytest.mark.e2e
def test_an_unlabeled_only_folder_of_real_scans(tmp_path):
    n = 600
    root = _write(tmp_path / "digits" / "unlabeled", _digits(n)).parent
    proc = _run_unlabelled(tmp_path, root, "no-labels")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = _check_unlabelled(tmp_path / "out", n)
    assert "no labels" in proc.stdout and "RankMe" in proc.stdout  # the CLI's summary line
    history = json.loads(next((tmp_path / "out" / ".kfp").rglob("pretrain/history")).read_text())
    assert all("rankme" in e and "knn_top1" not in e for e in history["epochs"])
    assert metrics["gate"]["comparisons"] and {c["metric"] for c in metrics["gate"]["comparisons"]} >= {"rankme"}


@pytest.mark.e2e
def test_a_flat_folder_of_images_in_sub_folders(tmp_path):
    n = 300
    root = _write(tmp_path / "photos", _digits(n), nested=True)
    proc = _run_unlabelled(tmp_path, root, "flat")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_unlabelled(tmp_path / "out", n)
