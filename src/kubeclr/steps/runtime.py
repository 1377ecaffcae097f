"""What every component does around its one library call.

A component passes its config sections and UI parameters here; this module
builds the typed config, sets up logging and step metrics, runs the step, and
turns a :class:`UserError` into one clear line and a non-zero exit (no
traceback for user errors, in a pod or locally).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from kubeclr import metrics as step_metrics_mod
from kubeclr.config import Config
from kubeclr.errors import UserError
from kubeclr.progress import setup_logging

log = logging.getLogger(__name__)

# Where a failing step leaves its one-line cause for the local runner to print.
ERROR_FILE_ENV = "KUBECLR_ERROR_FILE"


def build_config(sections: Mapping[str, Any], overrides: Mapping[str, Any]) -> Config:
    """Config from the sections a component received plus its UI parameters."""
    return Config.from_dict({k: v for k, v in sections.items() if v}, origin="pipeline parameters").override(
        dict(overrides))


def run_step(step: str, run_name: str, fn: Callable[..., Any], sections: Mapping[str, Any],
             overrides: Mapping[str, Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(cfg, *args, **kwargs)`` as pipeline step ``step``."""
    setup_logging()
    try:
        cfg = build_config(sections, overrides)
        with step_metrics_mod.step_metrics(cfg.metrics, run_name, step):
            return fn(cfg, *args, **kwargs)
    except UserError as exc:
        message = f"{step}: {exc}"
        log.error(message)
        error_file = os.environ.get(ERROR_FILE_ENV)
        if error_file:
            Path(error_file).write_text(message + "\n")
        sys.exit(exc.exit_code)


def log_linear_eval(results: Mapping[str, Any], metrics: Any, confusion: Any) -> None:
    """Put linear-eval results on KFP's Metrics and ClassificationMetrics artifacts."""
    for key in ("val_top1", "val_top5", "test_top1", "test_top5", "seconds"):
        if results.get(key) is not None:
            metrics.log_metric(key, float(results[key]))
    if results.get("knn"):
        metrics.log_metric("knn_test_top1", float(results["knn"]["test_top1"]))
    confusion.log_confusion_matrix(list(results["class_names"]), [list(map(int, r)) for r in results["confusion"]])


def log_report(summary: Mapping[str, Any], metrics: Any) -> None:
    """Headline scalars of metrics.json on the report step's Metrics artifact."""
    pretrain, linear = summary["pretrain"], summary["linear_eval"]
    metrics.log_metric("linear_test_top1", float(linear["test_top1"]))
    metrics.log_metric("linear_test_top5", float(linear["test_top5"]))
    metrics.log_metric("knn_test_top1", float(summary["knn"]["test_top1"]))
    metrics.log_metric("pretrain_final_loss", float(pretrain["final_loss"]))
    metrics.log_metric("pretrain_images_per_second", float(pretrain["images_per_second"]))
    metrics.log_metric("pretrain_seconds", float(pretrain["seconds"]))
