"""The report's lab-notebook sections: the gate's verdict, trends over the run history, the environment.

Everything here renders from the metrics.json dict (``gate``, ``history``, ``environment``), so the
same facts appear in the HTML report, the Markdown summary and metrics.json. All text is escaped.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from kubeclr.report import charts
from kubeclr.report.gate import describe, summary_line
from kubeclr.report.text import md_escape, table

_GATE_CLASS = {"pass": "ok", "warn": "warn", "fail": "fail", "not-armed": "sub"}
TRENDS = (  # history value key, title, y label
    ("linear_top1", "Linear test top-1", "top-1"),
    ("knn_top1", "kNN test top-1", "top-1"),
    ("throughput", "Pretraining throughput", "images / s"),
    ("final_loss", "Final NT-Xent loss", "loss"),
)


def gate_markdown(metrics: Mapping[str, Any]) -> list[str]:
    """The gate's verdict and comparisons as Markdown lines (empty without a gate block)."""
    gate = metrics.get("gate")
    if not gate:
        return []
    series = metrics.get("history", {}).get("series", "")
    verdict = md_escape(summary_line(gate))
    lines = [f"**Regression gate** ({md_escape(gate['status'])}, series {md_escape(series)}): {verdict}.", ""]
    if gate["runs_compared"]:
        lines += ["| metric | this run | median | allowed drop | verdict |", "|---|---|---|---|---|"]
        for c in gate["comparisons"]:
            allowed = f"{c['allowed_drop']:.3g}" if c["kind"] == "absolute" else f"{c['allowed_drop']:.0%}"
            metric, verdict = md_escape(c["metric"]), md_escape(c["verdict"])
            lines.append(f"| {metric} | {c['value']:.4g} | {c['median']:.4g} | {allowed} | {verdict} |")
        lines.append("")
    return lines


def gate_banner(metrics: Mapping[str, Any]) -> str:
    """One line for the report's first screen."""
    gate = metrics.get("gate")
    if not gate:
        return ""
    role = ' role="alert"' if gate["status"] in ("fail", "warn") else ""
    cls = _GATE_CLASS[gate["status"]]
    status, line = charts.esc(gate["status"]), charts.esc(summary_line(gate))
    return f'<p class="{cls}"{role}><b>Regression gate: {status}</b> — {line}</p>'


def _trend(key: str, title: str, y_label: str, past: Sequence[Mapping[str, Any]], now: float, band: Any) -> str:
    values = [r.get(key) for r in past] + [now]
    x = list(range(1, len(values) + 1))
    series: dict[str, Sequence[float | None]] = {title: values}
    if band is not None and band.get("floor") is not None:
        series["gate floor"] = [band["floor"]] * len(values)
        series["median"] = [band["median"]] * len(values)
    svg = charts.line_chart(
        x, series, title=f"{title} (last point: this run)", x_label="run", y_label=y_label, integer_x=True
    )
    return charts.svg_img(svg, f"{title} over the last {len(values)} runs of the series, this run last")


def history_html(metrics: Mapping[str, Any]) -> str:
    """The gate's table and the trend charts (an empty string without earlier runs)."""
    gate, history = metrics.get("gate"), metrics.get("history") or {}
    if not gate:
        return ""
    rows = []
    for c in gate["comparisons"]:
        rows.append(
            (
                c["metric"],
                f"{c['value']:.4g}",
                "–" if c["median"] is None else f"{c['median']:.4g}",
                describe(c),
                c["verdict"],
            )
        )
    parts = [
        '<section class="card"><h2>Against earlier runs</h2>',
        f'<p class="sub">series <code>{charts.esc(history.get("series", ""))}</code> · '
        f"{gate['runs_compared']} earlier run(s) read from {charts.esc(history.get('uri') or 'no history')}"
        + (f" · {history['skipped']} unreadable record(s) skipped" if history.get("skipped") else "")
        + "</p>",
        table(rows, ("metric", "this run", "median", "comparison", "verdict"), (1, 2)),
    ]
    past = history.get("records") or []
    if past:
        now = {c["metric"]: c["value"] for c in gate["comparisons"]}
        now["final_loss"] = float(metrics["pretrain"]["final_loss"])
        bands = {c["metric"]: c for c in gate["comparisons"]}
        parts.append('<div class="grid">')
        for key, title, y_label in TRENDS:
            if math.isfinite(now.get(key, math.nan)):
                parts.append(_trend(key, title, y_label, past, now[key], bands.get(key)))
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def environment_rows(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Package, commit, image, library versions, devices: what a rerun needs to match."""
    env, pre = metrics.get("environment") or {}, metrics["pretrain"]
    device = f"{pre.get('device_name') or pre['device']} × {pre.get('world_size') or 1}"
    keys = ("kubeclr", "git_commit", "image", "python", "torch", "cuda", "cudnn", "host_cpus")
    return [("training device", device), *((k, env[k]) for k in keys if env.get(k) not in (None, ""))]
