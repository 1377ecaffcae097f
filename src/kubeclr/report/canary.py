"""What the report step does with the run history: compare, judge, record.

:func:`judge` reads the series' earlier runs (:mod:`kubeclr.report.history`) and
evaluates the gate (:mod:`kubeclr.report.gate`) before the report is rendered;
:func:`record` appends this run once the report exists. Storage trouble never
hides the report: an unreachable history is a warning (the gate is not armed)
and a record that cannot be written is a warning too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

from kubeclr import __version__
from kubeclr.config import Config
from kubeclr.errors import StorageError, UserError
from kubeclr.report.gate import evaluate, summary_line
from kubeclr.report.history import History, append_record, metric_values, read_history, series_name
from kubeclr.storage.store import open_store

log = logging.getLogger(__name__)

GIT_COMMIT_ENV = "KUBECLR_GIT_COMMIT"  # baked into the image at build time
IMAGE_ENV = "KUBECLR_IMAGE"  # set on the pipeline's tasks


class GateFailed(UserError):
    """The regression gate failed with ``gate.action=fail`` (the report and the record exist)."""


def judge(cfg: Config, summary: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(gate, history facts)`` for this run's metrics.json ``summary``.

    History facts: ``{"uri", "series", "runs_read", "skipped", "records": [metric values…], "error"}``.
    """
    series = series_name(cfg)
    facts: dict[str, Any] = {"uri": cfg.storage.history_uri, "series": series, "runs_read": 0, "skipped": 0}
    history = History(series=series, records=[])
    if cfg.storage.history_uri:
        try:
            history = read_history(open_store(cfg.storage.history_uri), series, cfg.report.history_runs)
        except StorageError as exc:
            log.warning("history: cannot read %s (%s); the gate is not armed this run", cfg.storage.history_uri, exc)
            facts["error"] = str(exc)
        facts |= {"runs_read": len(history.records), "skipped": history.skipped}
        if history.skipped:
            log.warning("history: %d unreadable record(s) of %s skipped", history.skipped, series)
    gate = evaluate(cfg.gate, summary, history.records)
    facts["records"] = [  # what the trend charts draw: the numbers, not whole earlier metrics.json files
        {"end_time": r.get("end_time"), "run_name": r.get("run_name"), **_values(r)} for r in history.records
    ]
    log.info("%s (series %s)", summary_line(gate), series)
    return gate, facts


def _values(record: Mapping[str, Any]) -> dict[str, float]:
    try:
        return metric_values(record["metrics"])
    except (KeyError, TypeError, ValueError):
        return {}


def git_commit() -> str:
    """The code's commit: from the image (``KUBECLR_GIT_COMMIT``), else the checkout, else 'unknown'."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, Any]:
    """Where the report step ran and with what code (the pretrain summary has the training device)."""
    import torch

    return {
        "kubeclr": __version__,
        "git_commit": git_commit(),
        "image": os.environ.get(IMAGE_ENV, ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version() or "none"),
        "host_cpus": os.cpu_count(),
        "host": platform.machine(),
    }


def record(cfg: Config, summary: Mapping[str, Any], *, run_id: str, started: dt.datetime) -> str | None:
    """Append this run to the history (no-op without ``storage.history_uri``); returns the record's key."""
    if not cfg.storage.history_uri:
        return None
    end = dt.datetime.now(dt.timezone.utc)
    pretrain = summary.get("pretrain", {})
    entry = {
        "version": 1,
        "run_name": summary.get("run_name"),
        "kfp_run_id": run_id,
        "series": summary["history"]["series"],
        "start_time": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "end_time": end.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "config_sha256": summary.get("config_sha256"),
        "environment": summary.get("environment", {}),
        "device": {k: pretrain.get(k) for k in ("device", "device_name", "world_size")},
        "gate": {k: summary["gate"][k] for k in ("status", "runs_compared")},
        "metrics": {k: v for k, v in summary.items() if k not in ("history", "environment")},
    }
    try:
        return append_record(open_store(cfg.storage.history_uri), entry["series"], entry)
    except StorageError as exc:
        log.warning("history: this run could not be recorded (%s)", exc)
        return None
