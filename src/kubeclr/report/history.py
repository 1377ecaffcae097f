"""The run history: one immutable JSON record per run under ``storage.history_uri``, grouped by series.

Layout: ``<history_uri>/<series>/<UTC end time>-<run id>.json``. A record is written with one
object write (atomic on both stores: a temp file renamed into place, or one S3 PUT), so a
record is either fully there or absent, and it is never rewritten. A *series* is the set of
runs that are comparable: ``report.series`` when set, otherwise a name derived from the keys
that change what a run measures (:data:`SERIES_KEYS`). Reading takes the newest
``report.history_runs`` records of the series; a missing prefix is a first run, an
unreadable record is skipped with a warning and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from kubeclr.config import Config
from kubeclr.errors import StorageError

if TYPE_CHECKING:  # the CLI reads the gate's wording without importing torch
    from kubeclr.core.checkpoint import Store

log = logging.getLogger(__name__)

# What makes two runs comparable: the model, the schedule and the data (not seeds, ports or URIs).
SERIES_KEYS = (
    "model.arch",
    "model.width",
    "model.stem",
    "pretrain.epochs",
    "pretrain.batch_size",
    "eval.protocol",
    "data.format",
    "data.source",
    "data.image_size",
    "data.train_limit",
    "data.test_limit",
)


def series_name(cfg: Config) -> str:
    """``report.series``, or ``<arch>-e<epochs>-b<batch>-<digest of SERIES_KEYS>``."""
    if cfg.report.series:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.report.series).strip("-") or "series"
    values = cfg.to_dict()
    picked = {k: values[k.split(".")[0]][k.split(".")[1]] for k in SERIES_KEYS}
    digest = hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.model.arch}-e{cfg.pretrain.epochs}-b{cfg.pretrain.batch_size}-{digest}"


@dataclass(frozen=True)
class History:
    """The earlier runs of a series: ``records`` oldest first; ``skipped`` unreadable ones."""

    series: str
    records: list[dict[str, Any]]
    skipped: int = 0


def _key_time(stamp: str) -> str:
    return re.sub(r"[^0-9TZ]", "", stamp)  # 2026-12-02T07:00:00Z -> 20261202T070000Z: sorts by time


def record_key(series: str, record: Mapping[str, Any]) -> str:
    run_id = re.sub(r"[^A-Za-z0-9-]+", "-", str(record.get("kfp_run_id") or "")).strip("-") or uuid.uuid4().hex[:12]
    return f"{series}/{_key_time(record['end_time'])}-{run_id}.json"


def read_history(store: Store, series: str, limit: int) -> History:
    """The newest ``limit`` readable records of ``series`` (a missing prefix: none).

    Raises:
        StorageError: the store cannot be listed at all (credentials, network).
    """
    keys = sorted(k for k in store.list(f"{series}/") if k.endswith(".json"))
    records, skipped = [], 0
    for key in reversed(keys):
        if len(records) == limit:
            break
        try:
            record = json.loads(store.read_bytes(key))
            if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
                raise ValueError("not a run record")
            metric_values(record["metrics"])  # the numbers the gate compares must be there
        except (StorageError, ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            log.warning("history: skipping unreadable record %s (%s)", key, str(exc).splitlines()[0][:120])
            skipped += 1
            continue
        records.append(record)
    records.reverse()
    return History(series=series, records=records, skipped=skipped)


def append_record(store: Store, series: str, record: Mapping[str, Any]) -> str:
    """Write ``record`` as a new object of ``series``; returns its key (never overwrites one)."""
    key = record_key(series, record)
    if store.exists(key):  # same second and run id: keep the first, write this one beside it
        key = key.removesuffix(".json") + f"-{uuid.uuid4().hex[:6]}.json"
    store.write_bytes(key, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    log.info("history: recorded this run as %s", key)
    return key


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers the gate and the trend charts follow, from a metrics.json.

    A number the run does not have is absent: the accuracies of a run without labels, ``rankme``
    of runs recorded before the label-free measures.
    """
    found = {
        "linear_top1": (metrics.get("linear_eval") or {}).get("test_top1"),
        "knn_top1": (metrics.get("knn") or {}).get("test_top1"),
        "throughput": metrics["pretrain"]["images_per_second"],
        "final_loss": metrics["pretrain"]["final_loss"],
        "rankme": (metrics.get("representation") or {}).get("rankme"),
    }
    return {name: float(value) for name, value in found.items() if value is not None}
