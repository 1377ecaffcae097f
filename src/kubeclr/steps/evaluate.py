"""The evaluation steps: ``extract_features``, ``linear_eval`` and ``report``.

Each reads the files of earlier steps (formats in :mod:`kubeclr.io`), makes
its library calls in :mod:`kubeclr.evaluate`, and writes its outputs
atomically. Unreadable inputs raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kubeclr.config import Config
from kubeclr.device import describe_device, resolve_device
from kubeclr.errors import ConfigError, DataError
from kubeclr.evaluate.features import extract_features as encode
from kubeclr.evaluate.knn import knn_accuracy
from kubeclr.evaluate.linear import linear_eval_features
from kubeclr.evaluate.report import ReportInputs, build_metrics, render_html, render_markdown
from kubeclr.evaluate.tsne import stratified_indices, tsne
from kubeclr.io import load_arrays, load_split, load_stats, read_json, save_arrays, write_bytes_atomic, write_json
from kubeclr.model import build_encoder

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _read(what: str, path: str | Path, reader: Any) -> Any:
    try:
        return reader(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{what} {path}: cannot be read ({type(exc).__name__}: {exc})") from None


def load_encoder(cfg: Config, path: str | Path) -> torch.nn.Module:
    """The encoder of ``cfg.model`` with the weights in ``path`` (weights-only load).

    Raises:
        DataError: unreadable file, or weights that do not fit ``cfg.model``.
    """
    encoder = build_encoder(cfg.model)
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything unloadable is a bad input file
        raise DataError(f"encoder {path}: not a weights-only torch state dict ({type(exc).__name__})") from None
    try:
        encoder.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"encoder {path}: does not match model.arch={cfg.model.arch} "
                        f"width={cfg.model.width} stem={cfg.model.stem} ({first})") from None
    return encoder


def extract_features(cfg: Config, encoder_path: str | Path, stats_path: str | Path, train_path: str | Path,
                     val_path: str | Path, test_path: str | Path, features_out: str | Path) -> dict:
    """Encode the three splits with the frozen encoder and save the features.

    Returns:
        ``{"seconds", "feature_dim", "device", "train_size", "val_size", "test_size"}``.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.pretrain.device)
    encoder = load_encoder(cfg, encoder_path)
    mean, std, _ = load_stats(stats_path)
    arrays: dict[str, np.ndarray] = {}
    class_names: tuple[str, ...] = ()
    for name, path in zip(SPLITS, (train_path, val_path, test_path)):
        split = _read(f"{name} split", path, load_split)
        class_names = split.class_names
        arrays[f"{name}_x"] = encode(encoder, split.images, mean, std, device=device,
                                     batch_size=cfg.eval.batch_size).numpy()
        arrays[f"{name}_y"] = split.labels.astype(np.int64)
    meta = {"seconds": time.perf_counter() - start, "feature_dim": int(encoder.feature_dim),
            "device": describe_device(device)}
    save_arrays(features_out, **arrays, class_names=np.asarray(class_names, dtype=str),
                meta=np.asarray(json.dumps(meta)))
    log.info("features: dim %d for %s images in %.1fs on %s", meta["feature_dim"],
             "/".join(str(len(arrays[f"{s}_y"])) for s in SPLITS), meta["seconds"], meta["device"])
    return {**meta, **{f"{s}_size": int(len(arrays[f"{s}_y"])) for s in SPLITS}}


def _features(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str], dict]:
    arrays = _read("features file", path, load_arrays)
    try:
        tensors = {k: torch.from_numpy(arrays[k]) for k in (f"{s}_{v}" for s in SPLITS for v in "xy")}
        names = [str(c) for c in arrays["class_names"]]
        meta = json.loads(str(arrays["meta"]))
    except (KeyError, ValueError) as exc:
        raise DataError(f"features file {path}: missing or malformed array ({exc})") from None
    return tensors, names, meta


def linear_eval(cfg: Config, features_path: str | Path, results_out: str | Path, classifier_out: str | Path, *,
                encoder_path: str | Path | None = None, stats_path: str | Path | None = None,
                train_path: str | Path | None = None, val_path: str | Path | None = None,
                test_path: str | Path | None = None) -> dict:
    """Linear evaluation (``cfg.eval.protocol``) plus weighted kNN; writes results and classifier.

    The 'seed' protocol trains on images, so it also needs the encoder, the stats
    and the three splits.

    Returns:
        The linear-eval results dict (contract in the module docs of the pipeline).

    Raises:
        ConfigError: protocol 'seed' without the image inputs.
        EncoderChangedError: a frozen protocol modified the encoder.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.pretrain.device)
    feats, names, _ = _features(features_path)
    if cfg.eval.protocol == "seed":
        if not all((encoder_path, stats_path, train_path, val_path, test_path)):
            raise ConfigError("eval.protocol=seed needs the encoder, stats and train/val/test splits")
        from kubeclr.evaluate.seed_protocol import linear_eval_seed  # image augmentation: only this protocol
        mean, std, _ = load_stats(stats_path)
        splits = {s: _read(f"{s} split", p, load_split) for s, p in zip(SPLITS, (train_path, val_path, test_path))}
        images = {s: torch.from_numpy(v.images) for s, v in splits.items()}
        labels = {s: torch.from_numpy(v.labels) for s, v in splits.items()}
        outcome = linear_eval_seed(load_encoder(cfg, encoder_path), images, labels, names, mean, std, cfg.eval,
                                   crop_size=cfg.augment.size, crop_scale=cfg.augment.crop_scale,
                                   device=device, seed=cfg.data.seed)
    else:
        outcome = linear_eval_features(feats, names, cfg.eval, device=device)
    knn_start = time.perf_counter()
    k = min(cfg.eval.knn_k, int(feats["train_y"].shape[0]))
    knn = {"test_top1": knn_accuracy(feats["train_x"].to(device), feats["train_y"], feats["test_x"], feats["test_y"],
                                     k=k, temperature=cfg.eval.knn_temperature, num_classes=len(names)),
           "k": k, "temperature": cfg.eval.knn_temperature, "seconds": time.perf_counter() - knn_start}
    results = {**outcome.results, "linear_seconds": outcome.results["seconds"],
               "seconds": time.perf_counter() - start, "knn": knn, "device": describe_device(device)}
    buf = io.BytesIO()
    torch.save({**outcome.classifier, "class_names": names, "protocol": results["protocol"]}, buf)
    write_bytes_atomic(classifier_out, buf.getvalue())
    write_json(results_out, results)
    log.info("linear eval (%s): val top-1 %.4f, test top-1 %.4f, top-5 %.4f; kNN top-1 %.4f",
             results["protocol"], results["val_top1"], results["test_top1"], results["test_top5"], knn["test_top1"])
    return results


def _split_facts(what: str, path: str | Path) -> tuple[int, dict]:
    """Size and meta of a split file without loading its images."""
    def reader(p: str | Path) -> tuple[int, dict]:
        with np.load(p, allow_pickle=False) as npz:
            return int(npz["labels"].shape[0]), json.loads(str(npz["meta"]))
    return _read(what, path, reader)


def report(cfg: Config, *, run_name: str, train_path: str | Path, val_path: str | Path, test_path: str | Path,
           stats_path: str | Path, history_path: str | Path, features_path: str | Path,
           results_path: str | Path, html_out: str | Path, markdown_out: str | Path,
           metrics_out: str | Path) -> dict:
    """Write report.html, report.md and metrics.json from the earlier steps' files.

    Returns:
        The metrics.json dict.

    Raises:
        DataError: an input file is unreadable or lacks a field metrics.json needs.
    """
    start = time.perf_counter()
    sizes, metas = {}, {}
    for name, path in zip(SPLITS, (train_path, val_path, test_path)):
        sizes[name], metas[name] = _split_facts(f"{name} split", path)
    mean, std, stats = load_stats(stats_path)
    history = _read("history file", history_path, read_json)
    results = _read("results file", results_path, read_json)
    feats, names, feat_meta = _features(features_path)
    train_meta = metas["train"]
    dataset = {"source": str(train_meta.get("source", "")),
               "synthetic": bool(train_meta.get("synthetic", False) or stats.get("synthetic", False)),
               "train_size": sizes["train"], "val_size": sizes["val"], "test_size": sizes["test"],
               "mean": mean, "std": std, "md5": train_meta.get("md5")}
    points, point_labels = [], []
    if cfg.eval.tsne_points >= 3 and feats["test_y"].shape[0] >= 3:
        idx = stratified_indices(feats["test_y"], cfg.eval.tsne_points, seed=cfg.data.seed)
        points = tsne(feats["test_x"][idx], seed=cfg.data.seed).tolist()
        point_labels = feats["test_y"][idx].tolist()
    timings = {"download_split": train_meta.get("seconds"), "compute_stats": stats.get("seconds"),
               "pretrain": history.get("summary", {}).get("seconds"), "extract_features": feat_meta.get("seconds"),
               "linear_eval": results.get("seconds"), "report": time.perf_counter() - start}
    inputs = ReportInputs(run_name=run_name, config=cfg.to_dict(), dataset=dataset, history=history,
                          results=results, timings={k: float(v) for k, v in timings.items() if v is not None},
                          tsne=points, tsne_labels=point_labels)
    try:
        metrics = build_metrics(inputs)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"report: history {history_path} / results {results_path} do not make a valid "
                        f"metrics.json ({exc})") from None
    write_bytes_atomic(html_out, render_html(inputs, metrics).encode("utf-8"))
    write_bytes_atomic(markdown_out, render_markdown(inputs, metrics).encode("utf-8"))
    write_json(metrics_out, metrics)
    log.info("report: %s, %s, %s", html_out, markdown_out, metrics_out)
    return metrics
