"""A model export folder made in seconds: the export step on a random encoder (no pretraining)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kubeclr.atomic import write_json
from kubeclr.config import Config
from kubeclr.core.model import build_encoder
from kubeclr.data.files import Split, save_split

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def random_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 ``(3, size, size)`` images, the same for the same seed."""
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def random_encoder(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """An untrained encoder of ``cfg.model`` in eval mode, the same for the same seed."""
    torch.manual_seed(seed)
    return build_encoder(cfg.model).eval()


def step_inputs(tmp_path: Path, cfg: Config, classifier_state: dict | None = None) -> list[Path]:
    """The export step's inputs: a random encoder of ``cfg.model``, 40 random test images, a random probe."""
    images = random_images(40).numpy()
    labels = np.arange(40) % 4
    meta = {"source": "test", "synthetic": True, "split": "test", "seconds": 0.0, "md5": None}
    for name in ("train", "test"):
        save_split(tmp_path / f"{name}.npz", Split(images, labels, tuple("abcd"), {**meta, "split": name}))
    write_json(tmp_path / "stats.json", {"mean": MEAN, "std": STD, "count": 40, "seconds": 0.0, "synthetic": True})
    encoder = random_encoder(cfg)
    torch.save(encoder.state_dict(), tmp_path / "encoder.pt")
    dim = encoder.feature_dim
    state = classifier_state or {
        "weight": torch.randn(4, dim),
        "bias": torch.zeros(4),
        "mean": torch.zeros(dim),
        "std": torch.ones(dim),
        "class_names": list("abcd"),
        "protocol": "features",
    }
    torch.save(state, tmp_path / "classifier.pt")
    write_json(
        tmp_path / "results.json",
        {"val_top1": 0.5, "test_top1": 0.25, "knn": {"test_top1": 0.3}, "protocol": "features"},
    )
    p = {
        k: tmp_path / f"{k}{ext}"
        for k, ext in (
            ("encoder", ".pt"),
            ("stats", ".json"),
            ("train", ".npz"),
            ("test", ".npz"),
            ("classifier", ".pt"),
            ("results", ".json"),
        )
    }
    return [p["encoder"], p["stats"], p["train"], p["test"], p["classifier"], p["results"]]


def make_export(tmp_path: Path, cfg: Config) -> Path:
    """Run the export step on :func:`step_inputs`; return the folder."""
    from kubeclr.steps import export_model

    export_model.run(cfg, *step_inputs(tmp_path, cfg), tmp_path / "model", run_name="fixture")
    return tmp_path / "model"
