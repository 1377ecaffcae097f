"""The run's Markdown summary and one self-contained HTML page (inline CSS, charts
embedded as SVG data URIs, no external requests, readable on a phone).

Every user-controlled string (run name, dataset source, class names, config
values) is escaped before it reaches HTML, SVG or Markdown.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping

from kubeclr import __version__
from kubeclr.report import charts
from kubeclr.report.metrics import ReportInputs, is_number
from kubeclr.report.notebook import (
    environment_rows,
    gate_banner,
    gate_markdown,
    history_html,
    l2_figure,
    loss_figure,
    references_html,
    views_section,
)
from kubeclr.report.text import breakable, md_escape
from kubeclr.report.text import escape as _e
from kubeclr.report.text import table as _table
from kubeclr.uri import redact_uri


def _compute_note(pre: dict) -> str:
    """ ", bf16, compiled in 51 s (first epoch 52 s)" — what the run's speed depends on, from the pretrain block."""
    parts = [pre["precision"]] if pre.get("precision") else []
    stats = pre.get("compile") or {}
    if stats.get("compiled"):
        cost = f"compiled in {pre['compile_seconds']:.0f} s" if is_number(pre.get("compile_seconds")) else "compiled"
        if is_number(pre.get("first_epoch_seconds")):
            cost += f" (first epoch {pre['first_epoch_seconds']:.0f} s)"
        if stats.get("graph_breaks") or stats.get("recompiles"):
            cost += f", {stats['graph_breaks']} graph break(s), {stats['recompiles']} recompile(s)"
        parts.append(cost)
    elif stats.get("fallback"):
        parts.append(f"eager: {stats['fallback']}")
    return "".join(f", {p}" for p in parts)


def pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if is_number(v) else "–"


def _sec(v: Any) -> str:
    return f"{v:.1f} s" if is_number(v) else "–"


# the verdicts of kubeclr.core.health that warn (its WARN_STATUSES; named here so the report imports no torch)
WARN_HEALTH = ("not-learning", "below-random-init", "collapsing")


def health_warning(pretrain: Mapping[str, Any]) -> str | None:
    """The message of a bad pretraining verdict (not learning, below its random init), or None when healthy."""
    health = pretrain.get("health") or {}
    return str(health.get("message")) if health.get("status") in WARN_HEALTH else None


def knn_init_final(history: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(kNN monitor at epoch 0, after the last epoch)`` of a pretraining history (None where not measured)."""
    epochs = history.get("epochs") or []
    init = epochs[0].get("knn_top1_init") if epochs else None
    if init is None:
        init = (history.get("summary") or {}).get("knn_top1_init")
    final = next((e["knn_top1"] for e in reversed(epochs) if is_number(e.get("knn_top1"))), None)
    return (init if is_number(init) else None), final


def _knn_note(history: Mapping[str, Any]) -> str:
    """ ", kNN monitor 31.0% at epoch 0 (before training) → 64.2%" for the Markdown line ('' without the monitor)."""
    init, final = knn_init_final(history)
    return f", kNN monitor {pct(init)} at epoch 0 (before training) → {pct(final)}" if init is not None else ""


def _knn_rows(history: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Pretraining table's kNN monitor rows: epoch 0 (the baseline) and the last epoch."""
    init, final = knn_init_final(history)
    if init is None and final is None:
        return []
    return [
        ("kNN monitor top-1, epoch 0 (before training)", pct(init)),
        ("kNN monitor top-1, last epoch", pct(final)),
    ]


def representation_rows(rep: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """The label-free measures, each with how to read it (empty when the run has none)."""
    if not rep:
        return []
    return [
        (
            "RankMe (effective rank)",
            f"{rep['rankme']:.1f} of {rep['feature_dim']}",
            "how many feature directions the images really use: 1 is collapse; within one method, higher "
            "usually means better downstream accuracy (Garrido et al. 2023)",
        ),
        (
            "alignment",
            f"{rep['alignment']:.3f}",
            "mean squared distance between two augmented views of an image, features on the unit sphere "
            "(0 to 4): lower means the views agree (Wang & Isola 2020)",
        ),
        (
            "uniformity",
            f"{rep['uniformity']:.3f}",
            "log of the mean Gaussian potential between images (t = 2): lower (more negative) means the "
            "features spread over the sphere; 0 means they all coincide",
        ),
    ]


def head_note(pretrain: Mapping[str, Any]) -> str:
    """Alignment and uniformity of the projection head's output, in one sentence ('' when not measured)."""
    head = pretrain.get("representation_head")
    if not head:
        return ""
    return (
        f"On the projection head's output z, what the loss compares (Wang & Isola measure SimCLR there; "
        f"{head['n_images']:,} pretraining images): alignment {head['alignment']:.3f}, "
        f"uniformity {head['uniformity']:.3f}."
    )


def _representation_section(metrics: Mapping[str, Any]) -> str:
    rep = metrics.get("representation")
    rows = representation_rows(rep)
    if not rows:
        return ""
    head = head_note(metrics["pretrain"])
    return (
        '<section class="card"><h2>Representation (label-free)</h2>'
        + f'<p class="sub">On {rep["n_images"]:,} held-out (test) images the encoder never trained on, no labels '
        "used: the measures a run without labels has, shown here beside the accuracy so you can see how they "
        "relate on your data.</p>"
        + _table(rows, ("measure", "value", "how to read it"))
        + (f'<p class="sub">{_e(head)}</p>' if head else "")
        + "</section>"
    )


def _images_used(ds: dict) -> str:
    """How many images of each kind the run used, e.g. 'pretraining 1,500 (1,000 labelled + 500 unlabelled); ...'."""
    unlabeled = int(ds.get("unlabeled_size") or 0)
    if ds.get("labelled") is False:
        text = f"pretraining {unlabeled:,} unlabelled; {ds['test_size']:,} held out for the label-free measures"
    else:
        pretrain = labelled = f"{ds['train_size']:,} labelled"
        if unlabeled:
            pretrain = f"{ds['train_size'] + unlabeled:,} ({labelled} + {unlabeled:,} unlabelled)"
        sizes = f"{ds['train_size']:,}/{ds['val_size']:,}/{ds['test_size']:,}"
        text = f"pretraining {pretrain}; evaluation train/val/test {sizes}"
    skipped = int(ds.get("skipped_images") or 0)
    return text + (f"; {skipped:,} bad images skipped" if skipped else "")


# The single-run pipeline's tasks in DAG order (pipelines/simclr.py): the step-timings table lists the
# tasks the run timed in this order, any others after them. The last two run only when compiled in.
TASKS = (
    "resolve_config",
    "download_split",
    "compute_stats",
    "pretrain",
    "extract_features",
    "linear_eval",
    "export_model",
    "report",
    "regression_gate",
    "deploy_model",
    "register_model",
)
ALWAYS = TASKS[:-2]


def step_timings(timings: Mapping[str, float]) -> tuple[list[tuple[str, float]], list[str]]:
    """``([(task, seconds), …] in DAG order, [tasks every run has that were not timed])``.

    The report step can only time what finished before it wrote the page: the tasks beside and
    after it (``export_model``, ``regression_gate``) appear once the times reach metrics.json.
    """
    rank = {task: i for i, task in enumerate(TASKS)}
    timed = sorted(timings.items(), key=lambda item: rank.get(item[0], len(TASKS)))  # stable: others keep order
    return [(task, float(sec)) for task, sec in timed], [task for task in ALWAYS if task not in timings]


def _untimed_note(untimed: list[str]) -> str:
    return (
        f"Not timed here: {', '.join(untimed)} (a task that ends after the report is written, or one that "
        "records no time); the Kubeflow run page shows every task's duration."
    )


NO_LABELS = (
    "This run had no labels: there is no linear probe, kNN accuracy or confusion matrix. The label-free "
    "measures below (effective rank, alignment, uniformity) describe the representation instead."
)


def _accuracy_markdown(lin: Mapping[str, Any], knn: Mapping[str, Any]) -> list[str]:
    return [
        f"| linear eval test top-1 ({md_escape(lin.get('protocol') or '')}) | {pct(lin['test_top1'])} |",
        f"| linear eval test top-5 | {pct(lin['test_top5'])} |",
        f"| linear eval val top-1 | {pct(lin['val_top1'])} |",
        f"| kNN test top-1 (k={knn.get('k', '–')}) | {pct(knn['test_top1'])} |",
    ]


def render_markdown(inp: ReportInputs, metrics: Mapping[str, Any]) -> str:
    """Short Markdown summary: headline accuracies, dataset, pretraining, timings."""
    ds, pre, lin, knn = metrics["dataset"], metrics["pretrain"], metrics["linear_eval"], metrics["knn"]
    synthetic = " **(SYNTHETIC sample data)**" if ds["synthetic"] else ""
    warning = health_warning(pre)
    lines = [
        f"# SimCLR run {md_escape(inp.run_name)}",
        "",
        *([f"> **Warning**: {md_escape(warning)}", ""] if warning else []),
        *([f"> {md_escape(NO_LABELS)}", ""] if lin is None else []),
        "| metric | value |",
        "|---|---|",
        *(_accuracy_markdown(lin, knn) if lin is not None else []),
        *[f"| {md_escape(name)} | {value} |" for name, value, _ in representation_rows(metrics.get("representation"))],
        "",
        *([md_escape(head_note(pre)), ""] if head_note(pre) else []),
        *gate_markdown(metrics),
        f"**Dataset**: {md_escape(ds['source'])}{synthetic}; {md_escape(_images_used(ds))}.",
        "",
        f"**Pretraining**: {md_escape(pre['arch'])}, {pre['epochs']} epochs, batch {pre['batch_size']}, "
        f"final loss {pre['final_loss']:.4f}, {pre['images_per_second']:.0f} images/s on "
        f"{md_escape(pre['device'])}{md_escape(_compute_note(pre))}{_knn_note(inp.history)}.",
        "",
        f"**Config**: SHA-256 `{md_escape(metrics.get('config_sha256', ''))}` (the whole config is in metrics.json).",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    timed, untimed = step_timings(metrics["timings"])
    lines += [f"| {md_escape(step)} | {sec:.1f} |" for step, sec in timed]
    lines += ["", md_escape(_untimed_note(untimed))] if untimed else []
    return "\n".join(lines) + "\n"


# Defence in depth behind the escaping: the page may show inline styles and data: images,
# and nothing else (no script runs, nothing is fetched, no form posts anywhere).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;--card:#fff;--bg:#f5f6f8;--accent:#1f77b4}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2em 0;word-break:break-word}
h2{font-size:1.15rem;margin:0 0 .5em}
.sub{color:var(--muted);margin:0 0 1em}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-size:.8rem;font-weight:700;
 background:#d62728;color:#fff;vertical-align:middle;letter-spacing:.05em}
.views{display:grid;grid-template-columns:repeat(3,1fr);max-width:100%;text-align:center;color:var(--muted);
 font-size:.85rem}
.views img{grid-column:1/-1;image-rendering:pixelated}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px;margin-bottom:16px;
 overflow-x:auto}
.ok{background:#e9f7ef;border:1px solid #7cc59a;border-radius:8px;padding:10px 14px;margin-bottom:16px}
.fail{background:#fdecea;border:1px solid #e0796f;border-radius:8px;padding:10px 14px;margin-bottom:16px}
.warn{background:#fff4e5;border:1px solid #f0b35b;border-radius:8px;padding:10px 14px;margin-bottom:16px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.kpi b{display:block;font-size:1.6rem}
.kpi span{color:var(--muted);font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td{overflow-wrap:break-word}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap;overflow-wrap:normal}
@media (max-width:480px){main{padding:8px}.card{padding:10px}table{font-size:.8rem}th,td{padding:3px 4px}
 .kpi b{font-size:1.3rem}}
code{overflow-wrap:break-word}
img{max-width:100%;height:auto}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:12px}
"""


def _charts(inp: ReportInputs) -> dict[str, str]:
    """The report's figures as ``<img>`` tags, keyed by section."""
    epochs = inp.history.get("epochs", [])
    x = [e["epoch"] for e in epochs]

    def per_epoch(key: str, name: str, title: str, y_label: str, alt: str) -> str:
        return charts.svg_img(
            charts.line_chart(
                x, {name: [e.get(key) for e in epochs]}, title=title, x_label="epoch", y_label=y_label, integer_x=True
            ),
            alt,
        )

    figs = {
        "loss": per_epoch("loss", "NT-Xent loss", "Pretraining loss", "loss", "Pretraining loss per epoch"),
        "lr": per_epoch("lr", "learning rate", "Learning rate (end of epoch)", "lr", "Learning rate per epoch"),
        "throughput": per_epoch(
            "images_per_second", "images/s", "Throughput", "images / s", "Pretraining throughput per epoch"
        ),
    }
    if any("knn_top1" in e for e in epochs):
        figs["knn"] = _knn_chart(inp.history)
    names = inp.results.get("class_names") or []  # none in a run without labels
    if names:
        figs["confusion"] = charts.svg_img(
            charts.heatmap(inp.results["confusion"], names, title="Confusion matrix (test)"),
            "Confusion matrix heatmap of the test split",
        )
        figs["per_class"] = charts.svg_img(
            charts.bar_chart(
                names, [inp.results["per_class"].get(n, 0.0) for n in names], title="Per-class accuracy (test)"
            ),
            "Per-class test accuracy",
        )
    if len(inp.tsne):
        figs["tsne"] = charts.svg_img(
            charts.scatter(inp.tsne, inp.tsne_labels, names, title=f"t-SNE of {len(inp.tsne)} test features"),
            "t-SNE of encoder features of test images" + (", coloured by class" if names else " (no labels)"),
        )
    return figs


def _knn_chart(history: Mapping[str, Any]) -> str:
    """The kNN monitor per epoch, from epoch 0 (the encoder before training) when measured, that level drawn flat."""
    init, _ = knn_init_final(history)
    points = [(e["epoch"], e["knn_top1"]) for e in history.get("epochs", []) if "knn_top1" in e]
    if init is not None:
        points.insert(0, (0, init))
    series: dict[str, list[float]] = {"kNN top-1": [v for _, v in points]}
    if init is not None:
        series["epoch 0 (before training)"] = [init] * len(points)  # a run must end above this line
    svg = charts.line_chart(
        [x for x, _ in points], series, title="kNN monitor", x_label="epoch", y_label="top-1", integer_x=True
    )
    alt = "kNN monitor accuracy per epoch" + (", from epoch 0 (before the first step)" if init is not None else "")
    return charts.svg_img(svg, alt)


def _accuracy_section(lin: Mapping[str, Any], knn: Mapping[str, Any]) -> str:
    rows = [
        (
            "linear (" + str(lin.get("protocol")) + ")",
            pct(lin["val_top1"]),
            pct(lin.get("val_top5")),
            pct(lin["test_top1"]),
            pct(lin["test_top5"]),
        ),
        (f"kNN (k={knn.get('k', '–')}, τ={knn.get('temperature', '–')})", "–", "–", pct(knn["test_top1"]), "–"),
    ]
    return (
        '<section class="card"><h2>Accuracy</h2>'
        + _table(
            rows,
            ("evaluation", *(f"{split} top\u2011{k}" for split in ("val", "test") for k in (1, 5))),
            (1, 2, 3, 4),
        )  # non-breaking hyphens: a narrow column breaks "val top-1" at the space only
        + f'<p class="sub">L2 chosen on val: {_e(lin.get("l2"))}</p></section>'
    )


def render_html(inp: ReportInputs, metrics: Mapping[str, Any]) -> str:
    """The self-contained HTML report."""
    ds, pre, lin, knn = metrics["dataset"], metrics["pretrain"], metrics["linear_eval"], metrics["knn"]
    figs = _charts(inp)
    badge = (
        ' <span class="badge" title="generated sample data, not CIFAR-10">SYNTHETIC</span>' if ds["synthetic"] else ""
    )
    rep = metrics.get("representation") or {}
    if lin is not None:
        kpis = [
            ("linear test top-1", pct(lin["test_top1"])),
            ("linear test top-5", pct(lin["test_top5"])),
            ("linear val top-1", pct(lin["val_top1"])),
            ("kNN test top-1", pct(knn["test_top1"])),
        ]
    else:  # no labels: the label-free measures are the headline
        kpis = [(name, value) for name, value, _ in representation_rows(rep)]
    kpis.append(("final loss", f"{pre['final_loss']:.4f}"))
    timed, untimed = step_timings(metrics["timings"])
    total = sum(v for _, v in timed) or 1.0
    timing_rows = [(s, f"{v:.2f}", f"{100 * v / total:.1f}%") for s, v in timed]
    config_rows = [
        (f"{sec}.{key}", redact_uri(value) if isinstance(value, str) else value)
        for sec, keys in inp.config.items()
        for key, value in keys.items()
    ]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>SimCLR report: {_e(inp.run_name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>SimCLR run {_e(inp.run_name)}{badge}</h1>",
        f'<p class="sub">{_e(pre["arch"])} · {pre["epochs"]} epochs · batch {pre["batch_size"]} · '
        f"{_e(pre['device'])} · generated {when}</p>",
        *(
            [f'<p class="warn" role="alert"><b>Warning</b>: {_e(health_warning(pre))}</p>']
            if health_warning(pre)
            else []
        ),
        gate_banner(metrics),
        '<div class="kpis card">'
        + "".join(f'<div class="kpi"><b>{v}</b><span>{_e(k)}</span></div>' for k, v in kpis)
        + "</div>",
        _accuracy_section(lin, knn) if lin is not None else f'<p class="warn"><b>No labels</b>: {_e(NO_LABELS)}</p>',
        history_html(metrics),
        _representation_section(metrics),
        '<section class="card"><h2>Dataset</h2>'
        + _table(
            [
                ("source", ds["source"]),
                ("synthetic", "yes" if ds["synthetic"] else "no"),
                (
                    "format",
                    f"{ds.get('format') or 'cifar10'}, {ds.get('image_size') or 32} px"
                    + (", streamed" if ds.get("streamed") else ""),
                ),
                ("MD5", ds.get("md5") or "not checked"),
                ("images used", _images_used(ds)),
                ("train / val / test", f"{ds['train_size']} / {ds['val_size']} / {ds['test_size']}"),
                ("mean (R, G, B)", ", ".join(f"{v:.4f}" for v in ds["mean"])),
                ("std (R, G, B)", ", ".join(f"{v:.4f}" for v in ds["std"])),
            ]
        )
        + "</section>",
        '<section class="card"><h2>Pretraining</h2>'
        + _table(
            [
                ("final loss", f"{pre['final_loss']:.4f}"),
                ("chance loss log(2B−1)", f"{math.log(2 * pre['batch_size'] - 1):.4f}"),
                (
                    "peak learning rate (after scaling)",
                    f"{pre['peak_lr']:.4g}" if is_number(pre.get("peak_lr")) else "–",
                ),
                ("wall time", _sec(pre["seconds"])),
                ("throughput", f"{pre['images_per_second']:.1f} images/s"),
                ("precision, compilation", _compute_note(pre).lstrip(", ") or "–"),
                *_knn_rows(inp.history),
            ]
        )
        + '<div class="grid">'
        + loss_figure(inp.history.get("epochs", []), int(pre["batch_size"]))
        + "".join(figs[k] for k in ("loss", "lr", "throughput", "knn") if k in figs)
        + "</div></section>",
        views_section(inp.views, inp.crop_size),
        references_html(metrics),
    ]
    if lin is not None:
        parts.append(
            '<section class="card"><h2>Linear evaluation (test split)</h2><div class="grid">'
            + figs["confusion"]
            + figs["per_class"]
            + l2_figure(lin.get("l2_sweep") or [], lin.get("l2"), at_bound=bool(lin.get("l2_at_bound")))
            + "</div></section>"
        )
    if "tsne" in figs:
        parts.append('<section class="card"><h2>Feature space (t-SNE)</h2>' + figs["tsne"] + "</section>")
    parts += [
        '<section class="card"><h2>Step timings</h2>'
        + _table(timing_rows, ("step", "seconds", "share"), (1, 2))
        + (f'<p class="sub">{_e(_untimed_note(untimed))}</p>' if untimed else "")
        + "</section>",
        '<section class="card"><h2>Environment</h2>' + _table(environment_rows(metrics)) + "</section>",
        '<section class="card"><h2>Configuration</h2>'
        + f'<p class="sub">SHA-256 <code>{breakable(metrics.get("config_sha256", ""))}</code>: the run\'s resolved '
        + "config; each step read its slice of it</p>"
        + _table(config_rows, ("key", "value"))
        + "</section>",
        f"<footer>kubeclr {_e(__version__)} · self-contained report, no external resources</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)
