"""metrics.json: what a run measured, in a schema that tests, docs and dashboards rely on.

``docs/metrics.md`` documents every key; :func:`validate_metrics` checks the
required ones (extra keys are fine).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# key -> type name; nested dicts are sections. Extra keys are allowed.
METRICS_SCHEMA: dict[str, Any] = {
    "run_name": "str",
    "dataset": {
        "source": "str",
        "synthetic": "bool",
        "train_size": "count",
        "val_size": "count",
        "test_size": "count",
        "unlabeled_size": "count",
        "mean": "rgb",
        "std": "rgb",
    },
    "pretrain": {
        "arch": "str",
        "epochs": "count",
        "batch_size": "count",
        "final_loss": "number",
        "seconds": "seconds",
        "images_per_second": "seconds",
        "device": "str",
    },
    "linear_eval": {"val_top1": "fraction", "test_top1": "fraction", "test_top5": "fraction", "seconds": "seconds"},
    "knn": {"test_top1": "fraction"},
    "representation": "representation",
    "config": {},
    "config_sha256": "sha256",
    "gate": {"status": "gate_status", "runs_compared": "count", "comparisons": "list"},
}
GATE_STATUSES = ("pass", "warn", "fail", "not-armed")


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_representation(v: Any) -> bool:
    """The label-free measures (kubeclr.eval.representation), or None where there were too few images."""
    if v is None:
        return True
    return (
        isinstance(v, Mapping)
        and all(is_number(v.get(k)) for k in ("rankme", "alignment", "uniformity"))
        and _is_count(v.get("n_images"))
        and _is_count(v.get("feature_dim"))
    )


_CHECKS = {
    "gate_status": (lambda v: v in GATE_STATUSES, "one of pass, warn, fail, not-armed"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "64 hex digits"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "count": (_is_count, "a non-negative integer"),
    "representation": (
        _is_representation,
        "null or {rankme, alignment, uniformity: numbers, n_images, feature_dim: counts}",
    ),
    "number": (is_number, "a finite number"),
    "seconds": (lambda v: is_number(v) and v >= 0, "a non-negative number"),
    "fraction": (lambda v: is_number(v) and 0.0 <= v <= 1.0, "a fraction in [0, 1]"),
    "rgb": (
        lambda v: isinstance(v, list) and len(v) == 3 and all(is_number(x) and 0 <= x <= 1 for x in v),
        "a list of 3 numbers in [0, 1]",
    ),
}


NEEDS_LABELS = ("linear_eval", "knn")  # null in a run without labels (dataset.labelled false)


def validate_metrics(obj: Any, schema: Mapping[str, Any] = METRICS_SCHEMA, prefix: str = "") -> None:
    """Check ``obj`` against the metrics.json schema (docs/metrics.md).

    A run without labels (``dataset.labelled`` false) has ``linear_eval`` and ``knn`` null:
    never a made-up accuracy.

    Raises:
        ValueError: naming the first missing or ill-typed key (``dataset.train_size``).
    """
    if not prefix and isinstance(obj, Mapping) and (obj.get("dataset") or {}).get("labelled") is False:
        invented = [k for k in NEEDS_LABELS if obj.get(k) is not None]
        if invented:
            raise ValueError(f"metrics: '{invented[0]}' must be null in a run without labels")
        schema = {k: v for k, v in schema.items() if k not in NEEDS_LABELS}
    if not isinstance(obj, Mapping):
        raise ValueError(f"metrics{'.' + prefix[:-1] if prefix else ''}: expected an object, got {type(obj).__name__}")
    for key, kind in schema.items():
        name = prefix + key
        if key not in obj:
            raise ValueError(f"metrics: missing key '{name}'")
        if isinstance(kind, dict):
            validate_metrics(obj[key], kind, name + ".")
            continue
        ok, expected = _CHECKS[kind]
        if not ok(obj[key]):
            raise ValueError(f"metrics: '{name}' must be {expected}, got {obj[key]!r}")


@dataclass
class ReportInputs:
    """Everything the report shows, already read from the step files.

    Attributes:
        run_name: user-chosen run name.
        config: ``Config.to_dict()``.
        dataset: the metrics.json ``dataset`` block (extras such as ``md5`` allowed).
        history: the history file (``epochs``, ``summary``).
        results: the linear-eval results file (with ``knn``).
        timings: step name → seconds, in DAG order (steps that did not report are absent).
        config_sha256: digest of ``config`` (:func:`kubeclr.config.config_digest`).
        tsne: (M, 2) embedding of test features, or empty.
        tsne_labels: (M,) labels of those points.
        views, crop_size: the grid of augmented view pairs and the views' side.
        representation: the label-free measures of the held-out images' features, or None.
    """

    run_name: str
    config: dict
    dataset: dict
    history: dict
    results: dict
    timings: dict[str, float]
    config_sha256: str = ""
    tsne: Sequence[Sequence[float]] = field(default_factory=list)
    tsne_labels: Sequence[int] = field(default_factory=list)
    views: str = ""  # PNG data URI of augmented view pairs (kubeclr.report.views.view_grid), or ''
    crop_size: int = 0
    representation: dict | None = None


def build_metrics(inp: ReportInputs) -> dict:
    """The metrics.json dict (docs/metrics.md schema plus extras), validated, but for ``gate``.

    The gate judges these metrics against the run history; the report step adds its verdict
    (:func:`kubeclr.report.canary.judge`) and validates the whole again.
    """
    res = inp.results
    labelled = inp.dataset.get("labelled", True)
    metrics = {
        "run_name": inp.run_name,
        "dataset": dict(inp.dataset),
        "pretrain": dict(inp.history.get("summary", {})),
        "linear_eval": None
        if not labelled
        else {
            "val_top1": res["val_top1"],
            "test_top1": res["test_top1"],
            "test_top5": res["test_top5"],
            "seconds": res["seconds"],
            "val_top5": res.get("val_top5"),
            "protocol": res.get("protocol"),
            "l2": res.get("l2"),
            "l2_sweep": res.get("l2_sweep", []),
            "l2_at_bound": res.get("l2_at_bound"),
            "per_class": res.get("per_class", {}),
        },
        "knn": dict(res.get("knn", {})) if labelled else None,
        "representation": dict(inp.representation) if inp.representation else None,
        "timings": {step: float(seconds) for step, seconds in inp.timings.items()},
        "config": dict(inp.config),
        "config_sha256": inp.config_sha256,
    }
    validate_metrics(metrics, {k: v for k, v in METRICS_SCHEMA.items() if k != "gate"})
    return metrics
