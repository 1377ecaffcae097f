"""Dependency-free SVG charts for the report.

Each function returns a standalone SVG document whose root carries explicit
``width``/``height`` (so browsers decode it with a non-zero natural size when
embedded as an ``<img>``). Every piece of text is XML-escaped: class names and
labels come from user data.
"""

from __future__ import annotations

import base64
import html
import math
import re
from typing import Mapping, Sequence

TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11"'


def esc(text: object) -> str:
    """XML/HTML-escape ``text`` (quotes included, safe in attributes)."""
    return html.escape(str(text), quote=True)


def color(i: int) -> str:
    """Categorical colour ``i``: tab10, then evenly spaced hues."""
    if i < len(TAB10):
        return TAB10[i]
    return f"hsl({(i * 137.508) % 360:.1f}, 65%, 45%)"


_NARROW, _SIGNS, _WIDE = frozenset("ijlft.,:;'|!()[] "), frozenset("#$&*+<=>^~"), frozenset("mwMW@%")


def _char_width(c: str) -> float:
    if not c.isascii() or c in _WIDE:
        return 12.0  # …, −, ×, Œ, CJK
    if c in _NARROW:
        return 4.5
    return 9.5 if c in _SIGNS or c.isupper() else 7.0


def text_width(text: str) -> float:
    """At least ``text``'s width in px at the charts' 11 px sans-serif (an upper bound per character
    for DejaVu Sans, the widest font the system-ui fallback lands on): what layout keeps free for it."""
    return sum(_char_width(c) for c in text)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


LEGEND_ROW = 16  # px per legend row


def legend_boxes(names: Sequence[str], x0: float, y0: float, x1: float) -> list[Box]:
    """Legend entries (10 px swatch, gap, name) packed left to right from ``(x0, y0)``, wrapping at ``x1``."""
    boxes: list[Box] = []
    x, y = x0, y0
    for name in names:
        w = 14 + text_width(name)
        if boxes and x + w > x1:
            x, y = x0, y + LEGEND_ROW
        boxes.append((x, y, x + w, y + 12))
        x += w + 16
    return boxes


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {_FONT}><title>{esc(title)}</title>'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def svg_img(svg: str, alt: str) -> str:
    """Embed an SVG as ``<img src="data:image/svg+xml;base64,…">`` with size and alt text."""
    width = re.search(r'width="(\d+)"', svg)
    height = re.search(r'height="(\d+)"', svg)
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<img src="data:image/svg+xml;base64,{data}" alt="{esc(alt)}" '
        f'width="{width.group(1) if width else 480}" height="{height.group(1) if height else 300}">'
    )


def nice_ticks(lo: float, hi: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps; whole numbers only when ``integer``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        lo, hi = lo - (abs(lo) or 1.0) * 0.5, hi + (abs(hi) or 1.0) * 0.5
    raw = (hi - lo) / max(count, 1)
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while (not ticks or ticks[-1] < hi - step * 1e-9) and len(ticks) < 50:  # up to the first tick >= hi
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(v: float, digits: int = 3) -> str:
    """Compact number label: 0.0003 → 3e-04, 12500 → 1.25e+04, 0.25 → 0.25 (``digits`` significant)."""
    if v == 0:
        return "0"
    if abs(v) < 1e-2:
        return f"{v:.{digits - 3}e}" if digits > 3 else f"{v:.0e}"
    return f"{v:.{digits}g}"


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """:func:`fmt` labels for ``ticks``, with as many more digits as it takes to tell them apart."""
    for digits in range(3, 10):
        labels = [fmt(t, digits) for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def line_chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 460,
    height: int = 260,
    integer_x: bool = False,
    x_marks: Mapping[str, float] | None = None,
) -> str:
    """Lines of one or more series over shared x values (non-finite points skipped).

    With more than one series (or mark), a legend sits between the title and the plot, in rows of
    its own (the chart grows by them), so it never covers a curve.

    ``integer_x``: x is a count (epochs), so its ticks are whole numbers.
    ``x_marks``: named x values (a sweep's choice), each a dashed vertical line across the plot,
    named in the legend after the series.
    """
    left, right, top, bottom = 58, 12, 26, 40
    marks = {name: float(v) for name, v in (x_marks or {}).items() if math.isfinite(v)}
    names = [*series, *marks]
    legend = legend_boxes(names, left, top - 4, width - right) if len(names) > 1 else []
    if legend:
        top = int(legend[-1][3]) + 12
        height += top - 26
    pw, ph = width - left - right, height - top - bottom
    finite = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    xs = [float(v) for v in x]
    yt = nice_ticks(min(finite, default=0.0), max(finite, default=1.0))
    span = [*xs, *marks.values()]
    xt = nice_ticks(min(span, default=0.0), max(span, default=1.0), count=6, integer=integer_x)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    sx = lambda v: left + (v - x0) / ((x1 - x0) or 1) * pw
    sy = lambda v: top + ph - (v - y0) / ((y1 - y0) or 1) * ph
    body = [f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">{esc(title)}</text>']
    for t, label in zip(yt, tick_labels(yt)):
        body.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 5}" y="{sy(t) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for t, label in zip(xt, tick_labels(xt)):
        body.append(f'<text x="{sx(t):.1f}" y="{top + ph + 15}" text-anchor="middle">{label}</text>')
    body.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#555"/>'
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text transform="translate(13,{top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(y_label)}</text>'
    )
    for i, mx in enumerate(marks.values(), start=len(series)):
        body.append(
            f'<line class="mark" x1="{sx(mx):.1f}" x2="{sx(mx):.1f}" y1="{top}" y2="{top + ph}" '
            f'stroke="{color(i)}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )  # under the curves: the chosen point stays visible
    for i, ys in enumerate(series.values()):
        pts = [(sx(a), sy(b)) for a, b in zip(xs, ys) if b is not None and math.isfinite(b)]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color(i)}" stroke-width="2"/>')
        body.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color(i)}"/>' for px, py in pts)
    for i, (name, (lx, ly, _, _)) in enumerate(zip(names, legend)):
        body.append(
            f'<g class="legend"><rect x="{lx:.1f}" y="{ly + 1:.1f}" width="10" height="10" fill="{color(i)}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly + 10:.1f}">{esc(name)}</text></g>'
        )
    return _svg(width, height, body, title)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def heatmap(matrix: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str) -> str:
    """Confusion-matrix heatmap: rows true class, columns predicted; colour = row fraction."""
    c = len(class_names)
    cell = max(12, min(36, 420 // max(c, 1)))
    label_w = 8 + 6 * max((len(_short(n)) for n in class_names), default=4)
    left, top = label_w + 18, 30
    width, height = left + c * cell + 12, top + c * cell + label_w + 26
    body = [f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">{esc(title)}</text>']
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, v in enumerate(row):
            frac = v / total
            shade = int(round(247 - frac * (247 - 48)))
            fill = f"rgb({shade},{int(round(251 - frac * (251 - 99)))},{int(round(255 - frac * (255 - 170)))})"
            x, y = left + j * cell, top + i * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff">'
                f"<title>{esc(class_names[i])} → {esc(class_names[j])}: {v}</title></rect>"
            )
            if cell >= 20:  # counts at the chart's 11 px, only where they fit
                ink = "#fff" if frac > 0.5 else "#222"
                body.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{ink}">{v}</text>'
                )
    for i, name in enumerate(class_names):
        mid = top + i * cell + cell / 2
        body.append(f'<text x="{left - 5}" y="{mid + 4}" text-anchor="end">{esc(_short(name))}</text>')
        cx = left + i * cell + cell / 2
        body.append(
            f'<text transform="translate({cx + 4},{top + c * cell + 6}) rotate(-90)" '
            f'text-anchor="end">{esc(_short(name))}</text>'
        )
    body.append(
        f'<text transform="translate(11,{top + c * cell / 2}) rotate(-90)" text-anchor="middle">true</text>'
        f'<text x="{left + c * cell / 2}" y="{height - 6}" text-anchor="middle">predicted</text>'
    )
    return _svg(width, height, body, title)


def bar_chart(
    labels: Sequence[str], values: Sequence[float], *, title: str, max_value: float = 1.0, width: int = 460
) -> str:
    """Horizontal bars (e.g. per-class accuracy), values labelled as percentages of ``max_value``."""
    bar, gap = 16, 6
    label_w = 8 + 6 * max((len(_short(n)) for n in labels), default=4)
    left, top = label_w + 8, 28
    pw = width - left - 52
    height = top + len(labels) * (bar + gap) + 10
    body = [f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">{esc(title)}</text>']
    for i, (name, v) in enumerate(zip(labels, values)):
        y = top + i * (bar + gap)
        w = max(0.0, min(1.0, v / max_value if max_value else 0.0)) * pw
        body.append(
            f'<text x="{left - 5}" y="{y + bar - 4}" text-anchor="end">{esc(_short(name))}</text>'
            f'<rect x="{left}" y="{y}" width="{pw}" height="{bar}" fill="#f0f0f0"/>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{color(0)}"/>'
            f'<text x="{left + pw + 4}" y="{y + bar - 4}">{100 * v / (max_value or 1):.1f}%</text>'
        )
    return _svg(width, height, body, title)


LEGEND_ROWS = 26  # legend entries that fit beside a 420 px plot
# where a class label may go, relative to its points' median (px), nearest first
_NEAR = sorted(((dx, dy) for dx in range(-60, 61, 20) for dy in range(-52, 53, 13)), key=lambda d: math.hypot(*d))


def label_box(x: float, y: float, name: str) -> Box:
    """The box of a centred label with its baseline at ``y`` (11 px text, its halo, a space either side)."""
    half = text_width(name) / 2 + 3
    return (x - half, y - 11, x + half, y + 4)


def class_labels(
    placed: Mapping[int, Sequence[tuple[float, float]]], names: Mapping[int, str], frame: Box
) -> list[tuple[tuple[float, float], int, tuple[float, float]]]:
    """``[((x, y) of the label, class, (x, y) of its points' median)]``: each class's name at its
    points' median, or at the nearest spot around it where the label overlaps no other label and
    stays in ``frame``; a class with no such spot is left to the legend. Largest classes first."""
    out: list[tuple[tuple[float, float], int, tuple[float, float]]] = []
    taken: list[Box] = []
    for lab, xy in sorted(placed.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        mx, my = sorted(p[0] for p in xy)[len(xy) // 2], sorted(p[1] for p in xy)[len(xy) // 2]
        for dx, dy in _NEAR:
            box = label_box(mx + dx, my + dy + 4, names[lab])  # baseline 4 px below: the text centred on it
            inside = frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
            if inside and not any(overlaps(box, other) for other in taken):
                taken.append(box)
                out.append(((mx + dx, my + dy + 4), lab, (mx, my)))
                break
    return out


def scatter(
    points: Sequence[Sequence[float]], labels: Sequence[int], class_names: Sequence[str], *, title: str, size: int = 420
) -> str:
    """2-D points coloured by class, with a legend (the t-SNE plot)."""
    legend_w = 24 + 7 * max((len(_short(n)) for n in class_names), default=4)
    width, height, pad, top = size + legend_w, size + 30, 12, 26
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    inner = size - 2 * pad
    body = [
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">{esc(title)}</text>',
        f'<rect x="{pad}" y="{top}" width="{inner}" height="{inner}" fill="none" stroke="#ddd"/>',
    ]
    placed: dict[int, list[tuple[float, float]]] = {}
    for (px, py), lab in zip(points, labels):
        # a 12 px margin inside the frame: markers never touch its edge or the title above it
        sx = pad + inner / 2 + (px - cx) / span * (inner - 24)
        sy = top + inner / 2 - (py - cy) / span * (inner - 24)
        placed.setdefault(int(lab), []).append((sx, sy))
        body.append(f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="2.6" fill="{color(int(lab))}" fill-opacity="0.8"/>')
    # each class's name by its points: no colour has to be trusted (unlabelled points, label -1, have none)
    if len(placed) <= LEGEND_ROWS and min(placed, default=0) >= 0:
        names = {lab: _short(class_names[lab]) if lab < len(class_names) else str(lab) for lab in placed}
        lines, labels = [], []
        for (x, y), lab, (mx, my) in class_labels(placed, names, (pad, top, pad + inner, top + inner)):
            if math.hypot(x - mx, y - 4 - my) > 12:  # moved off its points: a leader line says whose it is
                lines.append(f'<line x1="{mx:.1f}" y1="{my:.1f}" x2="{x:.1f}" y2="{y - 4:.1f}" stroke="#555"/>')
            labels.append(
                f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="middle" paint-order="stroke" '
                f'stroke="#fff" stroke-width="3" fill="#222">{esc(names[lab])}</text>'
            )
        body += lines + labels
    shown = class_names if len(class_names) <= LEGEND_ROWS else class_names[: LEGEND_ROWS - 1]
    for i, name in enumerate(shown):
        y = top + 6 + i * 16
        body.append(
            f'<circle cx="{size + 6}" cy="{y}" r="5" fill="{color(i)}"/>'
            f'<text x="{size + 15}" y="{y + 4}">{esc(_short(name))}</text>'
        )
    if len(shown) < len(class_names):  # CIFAR-100: the legend would not fit beside the plot
        y = top + 10 + len(shown) * 16
        body.append(f'<text x="{size + 6}" y="{y}">… {len(class_names) - len(shown)} more classes</text>')
    return _svg(width, height, body, title)
