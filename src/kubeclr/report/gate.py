"""The regression gate: this run against the median of its series' earlier runs.

Four comparisons, each against the median of the history (robust to one odd run):
linear test top-1 and kNN test top-1 may drop by at most an *absolute* amount
(``gate.max_drop_linear_top1``, ``gate.max_drop_knn_top1``), pretraining throughput and
the test features' effective rank (RankMe, label-free) by at most a *relative* one
(``gate.max_drop_throughput``, ``gate.max_drop_rankme``; RankMe against the earlier runs
that measured it). With fewer than
``gate.min_runs`` earlier runs the gate is ``not-armed`` (the numbers are still
reported). A failed comparison makes the status ``fail`` with ``gate.action=fail``
and ``warn`` with ``warn``; otherwise it is ``pass``.

One check needs no history: a run whose pretraining health is in :data:`HEALTH_FAILURES`
(``below-random-init``: its final kNN monitor is not above its own encoder before the
first step; ``collapsing``: its features fold into a few directions; :mod:`kubeclr.core.health`)
fails or warns the same way, armed or not.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from kubeclr.config import GateConfig
from kubeclr.report.history import metric_values

GATE_PREFIX = "gate FAILED"  # how a failed gate's one line starts (the local runner looks for it)
STATUS_CODE = {"pass": 0, "warn": 1, "fail": 2, "not-armed": -1}  # simclr_gate_status
# pretrain.health verdicts the gate fails on, with or without history
HEALTH_FAILURES = ("below-random-init", "collapsing")
# metric -> (gate key of its allowed drop, kind of drop)
COMPARISONS = {
    "linear_top1": ("max_drop_linear_top1", "absolute"),
    "knn_top1": ("max_drop_knn_top1", "absolute"),
    "throughput": ("max_drop_throughput", "relative"),
    "rankme": ("max_drop_rankme", "relative"),  # compared where this run and earlier ones measured it
}


def evaluate(gate: GateConfig, metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The gate's verdict for ``metrics`` (this run's metrics.json) against ``history`` (earlier records).

    Returns:
        ``{"status", "action", "runs_compared", "min_runs", "comparisons": [{"metric", "value",
        "median", "allowed_drop", "kind", "drop", "floor", "verdict"}, …], "health": {"status",
        "verdict", "knn_top1_init", "knn_top1_final", "rankme_final"}}`` (``health.verdict``: ``fail`` for a status
        in :data:`HEALTH_FAILURES`, else ``pass``).
    """
    now = metric_values(metrics)
    past = [metric_values(r["metrics"]) for r in history]
    armed = len(past) >= gate.min_runs
    comparisons = []
    for metric, (key, kind) in COMPARISONS.items():
        if metric not in now:
            continue
        allowed = float(getattr(gate, key))
        entry: dict[str, Any] = {"metric": metric, "value": now[metric], "allowed_drop": allowed, "kind": kind}
        earlier = [p[metric] for p in past if metric in p]
        if earlier:
            median = statistics.median(earlier)
            floor = median - allowed if kind == "absolute" else median * (1 - allowed)
            drop = median - now[metric] if kind == "absolute" else (1 - now[metric] / median if median else 0.0)
            ok = now[metric] >= floor
            entry |= {"median": median, "floor": floor, "drop": drop}
            entry["verdict"] = ("pass" if ok else "fail") if len(earlier) >= gate.min_runs else "not-armed"
        else:
            entry |= {"median": None, "floor": None, "drop": None, "verdict": "not-armed"}
        comparisons.append(entry)
    health = _health(metrics)
    if any(c["verdict"] == "fail" for c in comparisons) or health["verdict"] == "fail":
        status = "fail" if gate.action == "fail" else "warn"
    elif not armed:
        status = "not-armed"
    else:
        status = "pass"
    return {
        "status": status,
        "action": gate.action,
        "runs_compared": len(past),
        "min_runs": gate.min_runs,
        "comparisons": comparisons,
        "health": health,
    }


def _health(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining verdict as the gate judges it (no history needed)."""
    health = (metrics.get("pretrain") or {}).get("health") or {}
    status = health.get("status")
    return {
        "status": status,
        "verdict": "fail" if status in HEALTH_FAILURES else "pass",
        "knn_top1_init": health.get("knn_top1_init"),
        "knn_top1_final": health.get("knn_top1_final"),
        "rankme_final": health.get("rankme_final"),
    }


def describe_health(health: Mapping[str, Any]) -> str:
    """'pretrain below-random-init: kNN top-1 0.31 <= 0.35 at epoch 0', 'pretrain collapsing: RankMe 1.3'."""
    line = f"pretrain {health['status']}"
    if health["status"] == "collapsing" and health.get("rankme_final") is not None:
        return line + f": RankMe {health['rankme_final']:.3g}"
    if health.get("knn_top1_init") is not None and health.get("knn_top1_final") is not None:
        line += f": kNN top-1 {health['knn_top1_final']:.4g} <= {health['knn_top1_init']:.4g} at epoch 0"
    return line


def failed(gate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The comparisons that failed."""
    return [c for c in gate.get("comparisons", []) if c.get("verdict") == "fail"]


def describe(comparison: Mapping[str, Any]) -> str:
    """One comparison in words: 'linear_top1 0.612 < 0.641 (median 0.661 - 0.020)'."""
    c = comparison
    if c.get("median") is None:
        return f"{c['metric']} {c['value']:.4g} (no earlier runs)"
    allowed = f"{c['allowed_drop']:.3g}" if c["kind"] == "absolute" else f"{c['allowed_drop']:.0%}"
    sign = "<" if c["verdict"] == "fail" else ">="
    return f"{c['metric']} {c['value']:.4g} {sign} {c['floor']:.4g} (median {c['median']:.4g} - {allowed})"


def runs(n: int) -> str:
    """'1 earlier run', '3 earlier runs'."""
    return f"{n} earlier run{'' if n == 1 else 's'}"


def summary_line(gate: Mapping[str, Any]) -> str:
    """One line for logs, the CLI and errors."""
    status, n = gate["status"], gate["runs_compared"]
    if status == "not-armed":
        return f"gate not armed: {runs(n)} of this series, {gate['min_runs']} needed"
    health = gate.get("health") or {}
    bad = [describe_health(health)] if health.get("verdict") == "fail" else []
    bad += [describe(c) for c in failed(gate)]
    if not bad:
        return f"gate passed against the median of {runs(n)}"
    head = GATE_PREFIX if status == "fail" else "gate warning"
    return f"{head}: " + "; ".join(bad)
