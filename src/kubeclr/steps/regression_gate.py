"""The ``regression_gate`` task: a failed gate (``gate.action=fail``) fails the run, after the report.

The report step always succeeds, so KFP uploads the report, the summary and metrics.json (a
failing container's outputs are not uploaded); this task reads the verdict from that
metrics.json and fails with the failed comparison in one line, which the Kubeflow UI shows red.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeclr.atomic import read_json
from kubeclr.config import Config
from kubeclr.data.files import read_input
from kubeclr.errors import DataError
from kubeclr.report.canary import GateFailed
from kubeclr.report.gate import summary_line

log = logging.getLogger(__name__)


def run(cfg: Config, metrics_path: str | Path) -> dict:
    """The gate block of ``metrics_path``.

    Raises:
        GateFailed: its status is ``fail``.
        DataError: the file cannot be read or has no gate.
    """
    del cfg
    metrics = read_input("metrics.json", metrics_path, read_json)
    gate = metrics.get("gate") if isinstance(metrics, dict) else None
    if not isinstance(gate, dict) or "status" not in gate:
        raise DataError(f"metrics.json {metrics_path}: no gate verdict")
    if gate["status"] == "fail":
        raise GateFailed(summary_line(gate))
    log.info("regression gate: %s", summary_line(gate))
    return gate
