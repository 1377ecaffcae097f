"""The ``report`` step: compare with the run history, judge (the gate), write report.html, report.md
and metrics.json, record the run, export. It succeeds even when the gate fails, so KFP uploads its
outputs; the ``regression_gate`` task after it turns a failed gate into a failed run."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import torch

from kubeclr.atomic import read_json, write_bytes_atomic, write_json
from kubeclr.config import Config, config_digest
from kubeclr.core.health import STATUSES as HEALTH_STATUSES
from kubeclr.data.files import SPLITS, load_stats, read_features, read_input, read_split, split_facts
from kubeclr.data.stream import first_images
from kubeclr.errors import DataError
from kubeclr.eval.tsne import balanced_indices, tsne
from kubeclr.report.canary import environment, judge, record
from kubeclr.report.gate import STATUS_CODE
from kubeclr.report.metrics import ReportInputs, build_metrics, validate_metrics
from kubeclr.report.render import render_html, render_markdown
from kubeclr.report.views import view_grid
from kubeclr.storage.folders import shard_dir
from kubeclr.storage.store import open_store
from kubeclr.telemetry.prometheus import export_gate
from kubeclr.uri import safe_segment

log = logging.getLogger(__name__)


def run(
    cfg: Config,
    *,
    run_name: str,
    train_path: str | Path,
    val_path: str | Path,
    test_path: str | Path,
    stats_path: str | Path,
    history_path: str | Path,
    features_path: str | Path,
    results_path: str | Path,
    html_out: str | Path,
    markdown_out: str | Path,
    metrics_out: str | Path,
    encoder_path: str | Path | None = None,
    metrics: Any = None,
    run_id: str = "",
) -> dict:
    """Write report.html, report.md and metrics.json from the earlier steps' files, then export them.

    With ``storage.export_uri`` set, the encoder, the report and metrics.json are
    copied under ``<export_uri>/<run_name>/`` (:func:`export_results`).

    Args:
        metrics: the KFP ``Metrics`` artifact of the run page (``log_metric``), or None.
        run_id: the KFP run's ID, kept in the history record.

    Returns:
        The metrics.json dict (plus ``exported``: the URIs written, when exporting).

    Raises:
        DataError: an input file is unreadable or lacks a field metrics.json needs.
    """
    start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    sizes, metas = {}, {}
    for name, path in zip(SPLITS, (train_path, val_path, test_path)):
        sizes[name], metas[name] = split_facts(f"{name} split", path)
    mean, std, stats = load_stats(stats_path)
    history = read_input("history file", history_path, read_json)
    results = read_input("results file", results_path, read_json)
    features = read_features(features_path)
    train_meta = metas["train"]
    dataset = {
        "source": str(train_meta.get("source", "")),
        "synthetic": bool(train_meta.get("synthetic", False) or stats.get("synthetic", False)),
        "train_size": sizes["train"],
        "val_size": sizes["val"],
        "test_size": sizes["test"],
        "unlabeled_size": int(train_meta.get("unlabeled_size", 0)),
        "mean": mean,
        "std": std,
        "md5": train_meta.get("md5"),
        "format": str(train_meta.get("format", cfg.data.format)),
        "image_size": int(train_meta.get("image_size", 0)) or None,
        "skipped_images": int(train_meta.get("skipped_images", 0)),
        "manifest_sha256": train_meta.get("manifest_sha256") or None,
        "pretrain_images": sizes["train"] + int(train_meta.get("unlabeled_size", 0)),
        "labelled": sizes["train"] > 0,
        "streamed": bool(train_meta.get("streamed", False)),
    }
    points, point_labels = _tsne_points(cfg, features.arrays)
    timings = {
        "download_split": train_meta.get("seconds"),
        "compute_stats": stats.get("seconds"),
        "pretrain": history.get("summary", {}).get("seconds"),
        "extract_features": features.meta.get("seconds"),
        "linear_eval": results.get("seconds"),
        "report": time.perf_counter() - start,
    }
    inputs = ReportInputs(
        run_name=run_name,
        config=cfg.to_dict(),
        config_sha256=config_digest(cfg),
        dataset=dataset,
        history=history,
        results=results,
        timings={k: float(v) for k, v in timings.items() if v is not None},
        tsne=points,
        tsne_labels=point_labels,
        views=_views(cfg, train_path, mean, std, test_path),
        crop_size=cfg.crop_size,
        representation=features.meta.get("representation"),
    )
    try:
        summary = build_metrics(inputs)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"report: history {history_path} / results {results_path} do not make a valid metrics.json ({exc})"
        ) from None
    gate, history_facts = judge(cfg, summary)
    summary |= {"gate": gate, "history": history_facts, "environment": environment()}
    validate_metrics(summary)
    write_bytes_atomic(html_out, render_html(inputs, summary).encode("utf-8"))
    write_bytes_atomic(markdown_out, render_markdown(inputs, summary).encode("utf-8"))
    write_json(metrics_out, summary)
    log.info("report: %s, %s, %s", html_out, markdown_out, metrics_out)
    started -= dt.timedelta(seconds=sum(inputs.timings.values()))  # the run began with its first step
    record(cfg, summary, run_id=run_id, started=started)
    export_gate(
        cfg.metrics, run_name, gate, STATUS_CODE[gate["status"]], history_facts["series"], cfg.gate.expected_interval_s
    )
    if metrics is not None:
        log_run_page(summary, metrics)
    if cfg.storage.export_uri:
        files = {"report.html": html_out, "report.md": markdown_out, "metrics.json": metrics_out}
        if encoder_path:
            files = {"encoder.pt": encoder_path, **files}
        summary = {**summary, "exported": export_results(cfg.storage.export_uri, run_name, files)}
    return summary  # a failed gate fails the next task (regression_gate), once these files are uploaded


def _views(cfg: Config, train_path: str | Path, mean: list[float], std: list[float], test_path: str | Path) -> str:
    """The grid of augmented view pairs of the first train images, else the first test images (a run
    without labels has no train images); '' when it cannot be drawn."""
    images = first_images(read_split("train split", train_path), 8, shard_dir)
    if not len(images):
        images = first_images(read_split("test split", test_path), 8, shard_dir)
    try:
        return view_grid(images, cfg.augment, mean, std, count=8, seed=cfg.data.seed)
    except (RuntimeError, ValueError) as exc:  # a figure must never fail the report
        log.warning("report: no view grid (%s)", exc)
        return ""


def _tsne_points(cfg: Config, arrays: dict) -> tuple[list, list]:
    """A class-balanced sample of the test features embedded in 2-D (empty when too few points are asked for).

    Without labels (every label -1) the sample is uniform and the points keep label -1: drawn in one colour.
    """
    labels = torch.from_numpy(arrays["test_y"])
    if cfg.eval.tsne_points < 3 or labels.shape[0] < 3:
        return [], []
    if bool((labels < 0).all()):
        generator = torch.Generator().manual_seed(cfg.data.seed)
        idx = torch.randperm(labels.shape[0], generator=generator)[: cfg.eval.tsne_points].sort().values
    else:
        idx = balanced_indices(labels, cfg.eval.tsne_points, seed=cfg.data.seed)
    return tsne(torch.from_numpy(arrays["test_x"])[idx], seed=cfg.data.seed).tolist(), labels[idx].tolist()


def log_run_page(summary: dict, metrics: Any) -> None:
    """Headline scalars of metrics.json on the report step's KFP Metrics artifact."""
    pretrain, linear = summary["pretrain"], summary["linear_eval"]
    if linear is not None:  # a run without labels has no accuracy
        metrics.log_metric("linear_test_top1", float(linear["test_top1"]))
        metrics.log_metric("linear_test_top5", float(linear["test_top5"]))
        metrics.log_metric("knn_test_top1", float(summary["knn"]["test_top1"]))
    metrics.log_metric("pretrain_final_loss", float(pretrain["final_loss"]))
    metrics.log_metric("pretrain_images_per_second", float(pretrain["images_per_second"]))
    metrics.log_metric("pretrain_seconds", float(pretrain["seconds"]))
    health = (pretrain.get("health") or {}).get("status")
    if health in HEALTH_STATUSES:  # 0 healthy, 1 slow-start, 2 not-learning, 3 below-random-init, 4 collapsing
        metrics.log_metric("pretrain_health_status", float(HEALTH_STATUSES.index(health)))
    if pretrain.get("knn_top1_init") is not None:  # the kNN monitor before the first step
        metrics.log_metric("pretrain_knn_top1_init", float(pretrain["knn_top1_init"]))
    for name, value in (summary.get("representation") or {}).items():
        if name in ("rankme", "alignment", "uniformity"):  # label-free, on the test images
            metrics.log_metric(f"representation_{name}", float(value))
    gate = summary.get("gate")
    if gate:
        metrics.log_metric("gate_status", float(STATUS_CODE[gate["status"]]))  # 0 pass, 1 warn, 2 fail, -1 off
        for c in gate["comparisons"]:
            if c.get("median"):
                metrics.log_metric(f"{c['metric']}_vs_median", float(c["value"] / c["median"]))


def export_results(export_uri: str, run_name: str, files: dict[str, str | Path]) -> list[str]:
    """Copy ``files`` ({name: local path}) under ``<export_uri>/<run_name>/``; return their URIs."""
    store = open_store(export_uri)
    prefix = safe_segment(run_name)
    uris = []
    for name, path in files.items():
        store.put_file(Path(path), f"{prefix}/{name}")
        uris.append(f"{export_uri.rstrip('/')}/{prefix}/{name}")
    log.info("exported %d files to %s/%s/", len(uris), export_uri.rstrip("/"), prefix)
    return uris
