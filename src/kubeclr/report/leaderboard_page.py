"""The sweep's leaderboard as a self-contained HTML page and a Markdown summary.

Input is the :func:`kubeclr.report.leaderboard.leaderboard` dict. The page leads with the
winner (chosen on validation) and its test accuracy, the only test number that is a headline;
then the table of every trial in rank order, one chart of validation accuracy against each
swept key, and each trial's resolved config under its digest (the table links to it). Every
user string is escaped; the page loads nothing and runs no script (:data:`render.CSP`).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping, Sequence

from kubeclr import __version__
from kubeclr.report import charts
from kubeclr.report.render import CSP, CSS
from kubeclr.report.render import pct as _pct
from kubeclr.report.text import breakable, md_escape
from kubeclr.report.text import escape as _e
from kubeclr.report.text import table as _table


def _setting(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(base config)"


def _short(digest: str | None) -> str:
    return (digest or "")[:12]


def _chart(board: Mapping[str, Any], key: str) -> str:
    """Validation accuracy against one swept key: each trial a point, the mean per value a line."""
    metric = board["metric"].split(".", 1)[1]
    trials = [t for t in board["trials"] if t.get(metric) is not None and key in t["overrides"]]
    values = [t["overrides"][key] for t in trials]
    title = f"{_label(metric)} vs {key}"
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values)) > 1:
        xs = sorted(set(values))
        by = {x: [t[metric] for t, v in zip(trials, values) if v == x] for x in xs}
        means = [sum(by[x]) / len(by[x]) for x in xs]
        # several trials per value (other keys or seeds swept too): their mean and their best
        series = {"mean": means, "best": [max(by[x]) for x in xs]} if len(trials) > len(xs) else {"trial": means}
        svg = charts.line_chart(xs, series, title=title, x_label=key, y_label=_label(metric))
    else:  # booleans, lists, words: one bar per value (the mean over the trials that had it)
        labels = list(dict.fromkeys(str(v) for v in values))
        means = [
            sum(ts) / len(ts) for ts in ([t[metric] for t, v in zip(trials, values) if str(v) == lab] for lab in labels)
        ]
        svg = charts.bar_chart(labels, means, title=title)
    return charts.svg_img(svg, title)


def _label(metric_key: str) -> str:
    """``val_top1`` → ``val top-1``."""
    return metric_key.replace("_top", " top-").replace("_", " ")


def _swept_keys(board: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(k for t in board["trials"] for k in t["overrides"]))


def _rows(board: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """``(rank, trial)`` in rank order, then the trials without a number (rank 0)."""
    by_index = {t["index"]: t for t in board["trials"]}
    ranked = [(r + 1, by_index[i]) for r, i in enumerate(board["ranking"])]
    return ranked + [(0, t) for t in board["trials"] if t["index"] not in board["ranking"]]


def render_markdown(board: Mapping[str, Any], *, run_name: str) -> str:
    """The run page's Markdown summary: the winner, then every trial in rank order."""
    head, winner = board["headline"], board["trials"][board["winner"]]
    lines = [
        f"# Sweep {md_escape(run_name)}: {len(board['trials'])} trials",
        "",
        f"**Winner: trial {winner['index']}** ({md_escape(_setting(winner['overrides']))}), chosen on "
        f"`{board['metric']}`: test top-1 **{_pct(head['test_top1'])}**, kNN test top-1 {_pct(head['knn_test_top1'])}.",
        "",
        "| rank | trial | setting | val top-1 | test top-1 | kNN test top-1 | seconds | config |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for rank, t in _rows(board):
        accuracies = " | ".join(_pct(t[k]) for k in ("val_top1", "test_top1", "knn_test_top1"))
        lines.append(
            f"| {rank or '–'} | {t['index']} | {md_escape(_setting(t['overrides']))} | {accuracies} | "
            f"{t['seconds']:.0f} | `{_short(t['config_sha256'])}` |"
        )
    groups = board.get("groups") or []
    if groups:
        lines += ["", "Mean ± std over seeds:", ""]
    for g in groups:
        val = g["val_top1"] or {"mean": math.nan, "std": math.nan}
        lines.append(
            f"- {md_escape(_setting(g['overrides']))}: val top-1 {_pct(val['mean'])} ± {_pct(val['std'])} "
            f"over {g['runs']} runs"
        )
    lines += ["", "Ranked on validation only; test accuracy is reported, never used to choose.", ""]
    return "\n".join(lines)


def _groups_html(board: Mapping[str, Any]) -> str:
    groups = board.get("groups")
    if not groups:
        return ""
    rows = [
        (
            _setting(g["overrides"]),
            g["runs"],
            *(
                f"{_pct(s['mean'])} ± {_pct(s['std'])}" if (s := g[k]) else "–"
                for k in ("val_top1", "test_top1", "knn_test_top1")
            ),
        )
        for g in groups
    ]
    return (
        '<section class="card"><h2>Mean ± std over seeds</h2>'
        + _table(rows, ("setting", "runs", "val top\u20111", "test top\u20111", "kNN test top\u20111"), (1, 2, 3, 4))
        + '<p class="sub">Settings ranked by their mean validation accuracy over n runs.</p></section>'
    )


def _trials_table(board: Mapping[str, Any]) -> str:
    head = ("rank", "trial", "setting", "val top\u20111", "test top\u20111", "kNN test top\u20111", "seconds", "config")
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for rank, t in _rows(board):
        digest = t["config_sha256"] or ""
        cells = [
            f"<td class=num>{rank or '–'}</td>",
            f"<td class=num>{t['index']}</td>",
            f"<td>{breakable(_setting(t['overrides']))}</td>",
            *(f"<td class=num>{_pct(t[k])}</td>" for k in ("val_top1", "test_top1", "knn_test_top1")),
            f"<td class=num>{t['seconds']:.0f}</td>",
            f'<td><a href="#config-{_e(digest)}"><code>{_e(_short(digest))}</code></a></td>',
        ]
        style = ' style="font-weight:700"' if t["index"] == board["winner"] else ""
        out.append(f"<tr{style}>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _configs_html(configs: Sequence[Mapping[str, Any]], board: Mapping[str, Any]) -> str:
    parts = ['<section class="card"><h2>Trial configs</h2>']
    for t, cfg in zip(board["trials"], configs):
        rows = [(f"{sec}.{key}", value) for sec, keys in cfg.items() for key, value in keys.items()]
        digest = t["config_sha256"] or ""
        parts.append(
            f'<details id="config-{_e(digest)}"><summary>trial {t["index"]}: {_e(_setting(t["overrides"]))} '
            f"· SHA-256 <code>{breakable(digest)}</code></summary>" + _table(rows, ("key", "value")) + "</details>"
        )
    return "".join(parts) + "</section>"


def render_html(board: Mapping[str, Any], *, run_name: str, configs: Sequence[Mapping[str, Any]] = ()) -> str:
    """The self-contained leaderboard page (``configs``: each trial's resolved config, in trial order)."""
    head, winner = board["headline"], board["trials"][board["winner"]]
    metric = board["metric"].split(".", 1)[1]
    kpis = [
        ("winner's test top-1", _pct(head["test_top1"])),
        (f"winner's {_label(metric)} (chosen on)", _pct(head[metric])),
        ("winner's kNN test top-1", _pct(head["knn_test_top1"])),
        ("trials", str(len(board["trials"]))),
    ]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = "".join(_chart(board, key) for key in _swept_keys(board))
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>SimCLR sweep: {_e(run_name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>SimCLR sweep {_e(run_name)}</h1>",
        f'<p class="sub">{len(board["trials"])} trials on one download, split and statistics · ranked on '
        f"<code>{_e(board['metric'])}</code> · generated {when}</p>",
        f'<p class="ok"><b>Winner: trial {winner["index"]}</b> ({_e(_setting(winner["overrides"]))}). '
        "Its test accuracy is the sweep's result; the other trials' test numbers are shown, never used to choose.</p>",
        '<div class="kpis card">'
        + "".join(f'<div class="kpi"><b>{v}</b><span>{_e(k)}</span></div>' for k, v in kpis)
        + "</div>",
        '<section class="card"><h2>Trials</h2>' + _trials_table(board) + "</section>",
        _groups_html(board),
        f'<section class="card"><h2>Accuracy vs parameter</h2><div class="grid">{figures}</div></section>',
        _configs_html(configs, board) if configs else "",
        f"<footer>kubeclr {_e(__version__)} · self-contained page, no external resources</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)
