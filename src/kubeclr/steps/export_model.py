"""The ``export_model`` step: the encoder and its linear probe as files anyone can serve.

Writes one folder (the pipeline's ``model`` output, what ``simclr-pipeline serve --model DIR``
and a KServe InferenceService load)::

    encoder.onnx      uint8 (B, 3, H, W) → float32 (B, D), normalisation inside, batch axis dynamic
    encoder.ts        the same, TorchScript
    classifier.onnx   float32 (B, D) features → (B, C) class probabilities (the linear probe)
    classifier.ts     the same, TorchScript
    model.json        the card (kubeclr.serving.card)

A run without labels has no probe: its folder holds the encoder and the card, which says so.

Each file is checked against the PyTorch model on real test images (max |diff| ≤ 1e-4); a
failed check fails the step and leaves no folder behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

from kubeclr.atomic import file_sha256, read_json, write_json
from kubeclr.config import Config
from kubeclr.core.model import load_encoder, read_state_dict
from kubeclr.data.files import load_stats, read_split
from kubeclr.data.stream import first_images
from kubeclr.errors import DataError
from kubeclr.serving import MODEL_FILES
from kubeclr.serving.card import model_card
from kubeclr.serving.embedder import Classifier, Embedder
from kubeclr.serving.export import CLASSIFIER_IO, ENCODER_IO, export_pair
from kubeclr.storage.folders import shard_dir

log = logging.getLogger(__name__)

# What this step reads of the config: what built the encoder, for the model card (kubeclr.steps).
READS: tuple[str, ...] = ("data", "model", "augment", "pretrain", "eval")

CHECK_IMAGES = 32  # test images the exported files are checked on


def _load_classifier(path: str | Path) -> tuple[Classifier | None, list[str]]:
    """linear_eval's probe and its class names; ``(None, [])`` when the run had no labels (no classes)."""
    state = read_state_dict(path, f"classifier {path}", DataError)
    try:
        if not state["class_names"]:
            return None, []
        return Classifier(state), [str(n) for n in state["class_names"]]
    except Exception as exc:  # missing keys, wrong shapes: one line
        raise DataError(f"classifier {path}: not linear_eval's classifier ({type(exc).__name__}: {exc})") from None


def run(
    cfg: Config,
    encoder_path: str | Path,
    stats_path: str | Path,
    train_path: str | Path,
    test_path: str | Path,
    classifier_path: str | Path,
    results_path: str | Path,
    model_out: str | Path,
    *,
    run_name: str,
) -> dict:
    """Export and check the models; write the folder ``model_out``; return the card.

    Raises:
        DataError: an unreadable input.
        ExportError: an exported file that does not compute what the PyTorch model does.
    """
    mean, std, _ = load_stats(stats_path)
    test = read_split("test split", test_path)
    if not len(test):
        raise DataError(f"test split {test_path}: no images to check the export on")
    embedder = Embedder(load_encoder(cfg.model, encoder_path), mean, std).eval()
    classifier, class_names = _load_classifier(classifier_path)
    images = torch.from_numpy(first_images(test, CHECK_IMAGES, shard_dir)).contiguous()
    with torch.no_grad():
        features = embedder(images)
    out = Path(model_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        checks = {"encoder": export_pair(embedder, images, staging, "encoder", ENCODER_IO)}
        if classifier is not None:  # a run without labels has no probe: the encoder alone
            checks["classifier"] = export_pair(classifier, features, staging, "classifier", CLASSIFIER_IO)
        card = model_card(
            cfg,
            run_name=run_name,
            image_size=tuple(images.shape[2:]),
            feature_dim=int(features.shape[1]),
            mean=mean,
            std=std,
            class_names=class_names,
            results=read_json(results_path),
            train_sha256=file_sha256(train_path),
            files={name: staging / name for name in MODEL_FILES if (staging / name).is_file()},
            checks=checks,
        )
        write_json(staging / "model.json", card)
        if out.exists():  # a retried pod: the previous attempt's folder goes
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model for serving in %s: %s", out, ", ".join(sorted(p.name for p in out.iterdir())))
    return card
