"""The report step's tail: copy the run's results to ``export_uri`` by run name."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubeclr.config import Config
from kubeclr.steps import evaluate
from kubeclr.storage import open_store, safe_segment

log = logging.getLogger(__name__)


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


def report_and_export(cfg: Config, *, encoder_path: str | Path, **report_kwargs: Any) -> dict:
    """Write the report (see :func:`kubeclr.steps.evaluate.report`), then export it if configured."""
    summary = evaluate.report(cfg, **report_kwargs)
    if cfg.storage.export_uri:
        summary["exported"] = export_results(cfg.storage.export_uri, report_kwargs["run_name"], {
            "encoder.pt": encoder_path,
            "report.html": report_kwargs["html_out"],
            "report.md": report_kwargs["markdown_out"],
            "metrics.json": report_kwargs["metrics_out"],
        })
    return summary
