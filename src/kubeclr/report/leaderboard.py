"""The sweep's leaderboard: trials ranked on validation, the winner's test accuracy as the headline.

:func:`leaderboard` turns each trial's overrides and metrics.json-style numbers into the
``leaderboard.json`` contract (``metric``, ``winner``, ``trials[]`` with ``overrides``,
``config_sha256``, ``val_top1``, ``test_top1``, ``knn_test_top1``, ``seconds``). When
``pretrain.seed`` is swept, ``groups[]`` gives each other setting's mean ± std over its seeds
(and the ranking is by that mean, "over n runs"). Test numbers never choose anything.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from kubeclr.config.sweep import SEED_KEY

FIELDS = {  # leaderboard key -> (metrics.json section, key)
    "val_top1": ("linear_eval", "val_top1"),
    "val_top5": ("linear_eval", "val_top5"),
    "test_top1": ("linear_eval", "test_top1"),
    "knn_test_top1": ("knn", "test_top1"),
}


def trial_row(index: int, overrides: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's line of the leaderboard from its overrides and its metrics."""
    row: dict[str, Any] = {"index": index, "overrides": dict(overrides), "config_sha256": metrics.get("config_sha256")}
    for key, (section, name) in FIELDS.items():
        value = (metrics.get(section) or {}).get(name)
        row[key] = float(value) if value is not None else None
    row["seconds"] = float(sum((metrics.get("timings") or {}).values()) or metrics.get("seconds", 0.0))
    return row


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _groups(trials: Sequence[Mapping[str, Any]], metric_key: str) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for t in trials:
        setting = {k: v for k, v in t["overrides"].items() if k != SEED_KEY}
        key = repr(sorted(setting.items()))
        by.setdefault(key, {"overrides": setting, "trials": []})["trials"].append(t)
    groups = []
    for g in by.values():
        members = g["trials"]
        entry = {"overrides": g["overrides"], "runs": len(members), "trial_indices": [t["index"] for t in members]}
        for key in ("val_top1", "test_top1", "knn_test_top1"):
            values = [t[key] for t in members if t[key] is not None]
            entry[key] = _mean_std(values) if values else None
        groups.append(entry)
    return sorted(groups, key=lambda g: -(g[metric_key] or {"mean": -1})["mean"])


def leaderboard(metric: str, rows: Sequence[Mapping[str, Any]], *, seeds: bool = False) -> dict[str, Any]:
    """The ``leaderboard.json`` dict: trials in their order, ``ranking`` by ``metric``, the ``winner``.

    Args:
        metric: ``linear_eval.val_top1`` or ``linear_eval.val_top5`` (validation only).
        rows: :func:`trial_row` of every trial, in trial order.
        seeds: ``pretrain.seed`` is swept: rank the settings by their mean over seeds, and the
            winner is the best seed of the best setting.

    Raises:
        ValueError: no trial has a value for ``metric``.
    """
    key = metric.split(".", 1)[1]
    scored = [r for r in rows if r.get(key) is not None]
    if not scored:
        raise ValueError(f"no trial reported {metric}")
    ranking = [r["index"] for r in sorted(scored, key=lambda r: (-r[key], r["index"]))]
    out: dict[str, Any] = {
        "metric": metric,
        "winner": ranking[0],
        "ranking": ranking,
        "trials": [dict(r) for r in rows],
    }
    if seeds:
        groups = _groups(scored, key)
        best = groups[0]
        out["groups"] = groups
        out["winner"] = max(best["trial_indices"], key=lambda i: (rows[i][key], -i))
    winner = rows[out["winner"]]
    out["headline"] = {
        "test_top1": winner["test_top1"],
        "knn_test_top1": winner["knn_test_top1"],
        key: winner[key],
        "chosen_on": metric,
    }
    return out
