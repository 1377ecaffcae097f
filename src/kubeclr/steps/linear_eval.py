"""The ``linear_eval`` step: a linear classifier on the frozen encoder, and weighted kNN.

``eval.protocol=features`` (default) fits logistic regression on the features
computed once by ``extract_features``; ``crops`` trains a linear layer by SGD
on random-resized crops through the encoder, so it also reads the encoder, the
statistics and the three splits.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import torch

from kubeclr.atomic import file_sha256, write_bytes_atomic, write_json
from kubeclr.config import Config, config_digest
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.core.model import load_encoder
from kubeclr.data.files import SPLITS, load_stats, read_features, read_split
from kubeclr.errors import ConfigError
from kubeclr.eval.knn import knn_accuracy
from kubeclr.eval.linear import linear_eval_features

log = logging.getLogger(__name__)

# What this step reads of the config: the evaluation, and (crops protocol) what built the encoder (kubeclr.steps).
READS: tuple[str, ...] = ("data", "model", "augment", "pretrain", "eval")

RUN_PAGE_METRICS = ("val_top1", "val_top5", "test_top1", "test_top5", "seconds")


def run(
    cfg: Config,
    features_path: str | Path,
    results_out: str | Path,
    classifier_out: str | Path,
    *,
    encoder_path: str | Path | None = None,
    stats_path: str | Path | None = None,
    train_path: str | Path | None = None,
    val_path: str | Path | None = None,
    test_path: str | Path | None = None,
    metrics: Any = None,
    confusion: Any = None,
) -> dict:
    """Linear evaluation (``cfg.eval.protocol``) plus weighted kNN; writes results and classifier.

    Args:
        cfg: the run's config.
        features_path: the ``extract_features`` output.
        results_out, classifier_out: where the results JSON and the classifier's weights go.
        encoder_path, stats_path, train_path, val_path, test_path: the 'crops' protocol's inputs.
        metrics, confusion: KFP ``Metrics`` / ``ClassificationMetrics`` artifacts that the run
            page shows (anything with ``log_metric`` / ``log_confusion_matrix``), or None.

    A dataset without labels (no class names) has nothing to evaluate: the step records that
    (``labelled: false``, no accuracy) and writes a classifier file with no classes.

    Returns:
        The results dict: accuracies, per-class accuracy, confusion, L2, kNN, seconds.

    Raises:
        ConfigError: protocol 'crops' without the image inputs.
        EncoderChangedError: a frozen protocol modified the encoder.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.pretrain.device)
    features = read_features(features_path)
    feats = {k: torch.from_numpy(v) for k, v in features.arrays.items()}
    names = list(features.class_names)
    if not names:
        return _without_labels(cfg, start, encoder_path, results_out, classifier_out)
    if cfg.eval.protocol == "crops":
        if not all((encoder_path, stats_path, train_path, val_path, test_path)):
            raise ConfigError("eval.protocol=crops needs the encoder, stats and train/val/test splits")
        from kubeclr.eval.crops import linear_eval_crops  # image augmentation: only this protocol

        mean, std, _ = load_stats(stats_path)
        splits = {s: read_split(f"{s} split", p) for s, p in zip(SPLITS, (train_path, val_path, test_path))}
        outcome = linear_eval_crops(
            load_encoder(cfg.model, encoder_path),
            {s: torch.from_numpy(v.images) for s, v in splits.items()},
            {s: torch.from_numpy(v.labels) for s, v in splits.items()},
            names,
            mean,
            std,
            cfg.eval,
            crop_size=cfg.crop_size,
            crop_scale=cfg.augment.crop_scale,
            device=device,
            seed=cfg.data.seed,
        )
    else:
        outcome = linear_eval_features(feats, names, cfg.eval, device=device)
    knn_start = time.perf_counter()
    k = min(cfg.eval.knn_k, int(feats["train_y"].shape[0]))
    knn = {
        "test_top1": knn_accuracy(
            feats["train_x"].to(device),
            feats["train_y"],
            feats["test_x"],
            feats["test_y"],
            k=k,
            temperature=cfg.eval.knn_temperature,
            num_classes=len(names),
        ),
        "k": k,
        "temperature": cfg.eval.knn_temperature,
        "seconds": time.perf_counter() - knn_start,
    }
    results = {
        **outcome.results,
        "linear_seconds": outcome.results["seconds"],
        "seconds": time.perf_counter() - start,
        "knn": knn,
        "device": describe_device(device),
        # which trial of a sweep these numbers are: its encoder and what this step read of its config
        "config_sha256": config_digest(cfg),
        "encoder_sha256": file_sha256(encoder_path) if encoder_path else None,
    }
    buf = io.BytesIO()
    torch.save({**outcome.classifier, "class_names": names, "protocol": results["protocol"]}, buf)
    write_bytes_atomic(classifier_out, buf.getvalue())
    write_json(results_out, results)
    log.info(
        "linear eval (%s): val top-1 %.4f, test top-1 %.4f, top-5 %.4f; kNN top-1 %.4f",
        results["protocol"],
        results["val_top1"],
        results["test_top1"],
        results["test_top5"],
        knn["test_top1"],
    )
    if metrics is not None:
        for key in RUN_PAGE_METRICS:
            if results.get(key) is not None:
                metrics.log_metric(key, float(results[key]))
        metrics.log_metric("knn_test_top1", float(knn["test_top1"]))
    if confusion is not None:
        confusion.log_confusion_matrix(names, [list(map(int, row)) for row in results["confusion"]])
    return results


def _without_labels(
    cfg: Config, start: float, encoder_path: str | Path | None, results_out: str | Path, classifier_out: str | Path
) -> dict:
    """The results of a run without labels: no probe, no kNN, no accuracy, said so."""
    results = {
        "labelled": False,
        "skipped": "the dataset has no labels: no linear probe, no kNN accuracy (see the label-free measures)",
        "seconds": time.perf_counter() - start,
        "config_sha256": config_digest(cfg),
        "encoder_sha256": file_sha256(encoder_path) if encoder_path else None,
    }
    buf = io.BytesIO()
    torch.save({"class_names": [], "protocol": None}, buf)
    write_bytes_atomic(classifier_out, buf.getvalue())
    write_json(results_out, results)
    log.info("linear eval: skipped, %s", results["skipped"].split(": ", 1)[1])
    return results
