"""The report's lab-notebook sections: the gate's verdict, trends over the run history, the environment.

Everything here renders from the metrics.json dict (``gate``, ``history``, ``environment``), so the
same facts appear in the HTML report, the Markdown summary and metrics.json. All text is escaped.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Callable, Mapping, Sequence

from kubeclr.report import charts
from kubeclr.report.gate import describe, runs, summary_line
from kubeclr.report.references import references_for
from kubeclr.report.text import breakable, md_escape, table
from kubeclr.uri import redact_uri

_GATE_CLASS = {"pass": "ok", "warn": "warn", "fail": "fail", "not-armed": "sub"}
TRENDS = (  # history value key, title, y label
    ("linear_top1", "Linear test top-1", "top-1"),
    ("knn_top1", "kNN test top-1", "top-1"),
    ("throughput", "Pretraining throughput", "images / s"),
    ("final_loss", "Final NT-Xent loss", "loss"),
    ("rankme", "RankMe of the test features (label-free)", "effective rank"),
)


HISTORY_HOWTO = "README, section “The canary: run history, regression gate, alerts”"
HISTORY_EXAMPLE = "--set storage.history_uri=s3://bucket/kubeclr/history"


def history_note(metrics: Mapping[str, Any], value: Callable[[Any], str], code: Callable[[str], str]) -> str:
    """Where this run's earlier runs were read from, in one sentence.

    Args:
        value: escapes a user value (the history URI, a storage error) for the page.
        code: formats one of the sentence's own code words (a config key, a CLI flag).
    """
    history = metrics.get("history") or {}
    uri = history.get("uri")
    if not uri:
        return (
            f"No run history is configured, so this run is compared with none. Set {code('storage.history_uri')} "
            f"to keep one and compare each run with the earlier runs of its series, e.g. {code(HISTORY_EXAMPLE)} "
            f"({HISTORY_HOWTO})."
        )
    where = value(redact_uri(uri))
    n, skipped = int(history.get("runs_read") or 0), int(history.get("skipped") or 0)
    unreadable = f" ({skipped} unreadable record{'' if skipped == 1 else 's'} skipped)" if skipped else ""
    if history.get("error"):
        return f"The run history {where} could not be read ({value(history['error'])}): this run is compared with none."
    if n:
        return f"{runs(n)} of this series read from {where}{unreadable}."
    if skipped:
        return f"No readable earlier run of this series in {where}{unreadable}."
    return f"This is the first run of this series recorded in {where}: the runs after it will be compared with it."


def gate_markdown(metrics: Mapping[str, Any]) -> list[str]:
    """The gate's verdict and comparisons as Markdown lines (empty without a gate block)."""
    gate = metrics.get("gate")
    if not gate:
        return []
    series = metrics.get("history", {}).get("series", "")
    verdict = md_escape(summary_line(gate))
    lines = [
        f"**Regression gate** ({md_escape(gate['status'])}, series {md_escape(series)}): {verdict}.",
        "",
        history_note(metrics, md_escape, lambda word: f"`{word}`"),
        "",
    ]
    if gate["runs_compared"]:
        lines += ["| metric | this run | median | allowed drop | verdict |", "|---|---|---|---|---|"]
        for c in gate["comparisons"]:
            allowed = f"{c['allowed_drop']:.3g}" if c["kind"] == "absolute" else f"{c['allowed_drop']:.0%}"
            metric, verdict = md_escape(c["metric"]), md_escape(c["verdict"])
            median = "–" if c["median"] is None else f"{c['median']:.4g}"  # no earlier run measured it
            lines.append(f"| {metric} | {c['value']:.4g} | {median} | {allowed} | {verdict} |")
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
        f'<p class="sub">series <code>{breakable(history.get("series", ""))}</code> · '
        + history_note(metrics, breakable, lambda word: f"<code>{breakable(word)}</code>")
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


def loss_figure(epochs: Sequence[Mapping[str, Any]], batch_size: int) -> str:
    """Sampled per-step training loss with the chance level ``log(2B − 1)`` (empty without step losses)."""
    x, y = [], []
    steps_done = 0
    for e in epochs:
        sampled = e.get("step_loss") or {}
        values, every = sampled.get("values") or [], int(sampled.get("every") or 1)
        x += [steps_done + k * every + 1 for k in range(len(values))]
        y += values
        steps_done += max(len(values) * every, 1)
    if not y:
        return ""
    chance = math.log(2 * batch_size - 1)
    svg = charts.line_chart(
        x,
        {"NT-Xent loss (sampled steps)": y, f"chance log(2B−1) = {chance:.2f}": [chance] * len(x)},
        title="Training loss per step",
        x_label="optimizer step",
        y_label="loss",
        integer_x=True,
    )
    return charts.svg_img(svg, "Training loss at sampled optimizer steps, with the chance level")


def l2_figure(sweep: Sequence[Mapping[str, Any]], chosen: float | None = None, *, at_bound: bool = False) -> str:
    """Validation top-1 of the linear probe for each L2 strength tried (log10 of L2 on x).

    Args:
        sweep: ``linear_eval.l2_sweep``: ``{"l2", "val_top1", "extended"}`` per strength tried
            (``extended``: past the configured grid, drawn as a series of its own).
        chosen: ``linear_eval.l2``, marked by a dashed line named in the legend.
        at_bound: ``linear_eval.l2_at_bound``: the choice still sat on an edge where the sweep had to
            stop, which the legend says.
    """
    points = sorted(
        (float(p["l2"]), float(p["val_top1"]), bool(p.get("extended"))) for p in sweep if float(p["l2"]) > 0
    )
    if len(points) < 2:
        return ""
    series = {"val top-1": [acc for _, acc, _ in points]}
    if any(ext for _, _, ext in points):
        series["past the configured grid"] = [acc if ext else None for _, acc, ext in points]
    marks = {}
    if chosen is not None and chosen > 0:
        note = ", at the sweep's bound: the optimum may lie beyond" if at_bound else ""
        marks[f"chosen L2 = {charts.fmt(chosen)}{note}"] = math.log10(chosen)
    svg = charts.line_chart(
        [math.log10(l2) for l2, _, _ in points],
        series,
        title="Linear probe: L2 sweep (chosen on val)",
        x_label="log10 L2",
        y_label="val top-1",
        x_marks=marks,
    )
    alt = "Validation accuracy of the linear probe per L2 strength"
    return charts.svg_img(svg, alt + (f", {next(iter(marks))}" if marks else ""))


VIEW_COLUMNS = ("original", "view 1", "view 2")  # the columns of kubeclr.report.views.view_grid


def views_section(view_grid_uri: str, crop_size: int) -> str:
    """The augmented view pairs (a PNG data URI made by :func:`kubeclr.report.views.view_grid`)."""
    prefix = "data:image/png;base64,"
    if not view_grid_uri.startswith(prefix):
        return ""
    head = base64.b64decode(view_grid_uri[len(prefix) : len(prefix) + 32])  # signature + IHDR: the size
    width, height = struct.unpack(">II", head[16:24])
    # one header per column of the grid, in a CSS grid as wide as the image: they stay over their columns
    # as the image scales down on a phone
    heads = "".join(f"<span>{name}</span>" for name in VIEW_COLUMNS)
    return (
        '<section class="card"><h2>What the encoder saw</h2>'
        '<p class="sub">a few train images and two views of each, drawn by the run\'s own augmentation '
        f"at {crop_size} px: the views of one image should still share its content</p>"
        f'<div class="views" style="width:{width}px">{heads}'
        f'<img src="{charts.esc(view_grid_uri)}" width="{width}" height="{height}" '
        'alt="train images and their augmented view pairs"></div>'
        "</section>"
    )


def references_html(metrics: Mapping[str, Any]) -> str:
    """Published CIFAR-10 results for the run's architecture beside its own (real CIFAR-10 only)."""
    refs = references_for(metrics)
    if not refs:
        return ""
    ours = (
        f"this run: {metrics['pretrain']['epochs']} epochs, linear {metrics['linear_eval']['test_top1']:.1%}, "
        f"kNN {metrics['knn']['test_top1']:.1%}"
    )
    rows = [(r.source, r.url, r.epochs, r.setup, f"{r.top1:.1%} {r.metric}") for r in refs]
    return (
        '<section class="card"><h2>Published results, same architecture</h2>'
        f'<p class="sub">{charts.esc(ours)} · numbers from the sources named, not measured here</p>'
        + table(rows, ("source", "where", "epochs", "setup", "top-1"), (2,))
        + "</section>"
    )
