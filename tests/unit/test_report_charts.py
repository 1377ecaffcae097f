"""The report's figures read without anything drawn over anything: legends beside the data,
class labels apart, every column of the view grid named."""

import base64
import html
import itertools
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from kubeclr.report.charts import (
    LEGEND_ROWS,
    color,
    label_box,
    line_chart,
    nice_ticks,
    overlaps,
    scatter,
    text_width,
)

NS = "{http://www.w3.org/2000/svg}"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _data_box(root) -> tuple[float, float, float, float]:
    """The bounding box of every curve and marker of a line chart."""
    xs, ys = [], []
    for c in root.iter(NS + "circle"):
        r = float(c.get("r"))
        xs += [float(c.get("cx")) - r, float(c.get("cx")) + r]
        ys += [float(c.get("cy")) - r, float(c.get("cy")) + r]
    for line in root.iter(NS + "polyline"):
        for pt in line.get("points").split():
            x, y = map(float, pt.split(","))
            xs.append(x)
            ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def _legend_boxes(root) -> list[tuple[float, float, float, float]]:
    """Swatch and name of each legend entry, the name as wide as :func:`text_width` allows."""
    boxes = []
    for g in root.iter(NS + "g"):
        if g.get("class") != "legend":
            continue
        rect, text = g.find(NS + "rect"), g.find(NS + "text")
        x, y = float(rect.get("x")), float(rect.get("y"))
        tx, ty = float(text.get("x")), float(text.get("y"))
        boxes.append((x, min(y, ty - 11), tx + text_width(text.text), max(y + 10, ty + 3)))
    return boxes


@pytest.mark.parametrize(
    "series",
    [
        {"NT-Xent loss (sampled steps)": [5.5, 5.2, 4.9, 3.0], "chance log(2B−1) = 3.43": [3.43] * 4},
        {"Pretraining throughput": [100, 101, 102, 103], "gate floor": [86.0] * 4, "median": [101.0] * 4},
        {f"a rather long series name number {i}": [float(i + k) for k in range(4)] for i in range(5)},
    ],
)
def test_line_chart_legend_covers_no_curve_and_no_other_entry(series):
    svg = line_chart([1, 2, 3, 4], series, title="t", x_label="x", y_label="y", integer_x=True)
    root = ET.fromstring(svg)
    legend, data = _legend_boxes(root), _data_box(root)
    assert len(legend) == len(series)
    width = float(root.get("width"))
    for a, b in itertools.combinations(legend, 2):
        assert not overlaps(a, b), (a, b)
    for box in legend:
        assert not overlaps(box, data), (box, data)
        assert box[0] >= 0 and box[2] <= width and box[1] >= 18  # inside the chart, below its title


def _svg_of(img: str) -> ET.Element:
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img).group(1)
    return ET.fromstring(base64.b64decode(data))


@pytest.mark.parametrize("at_bound", [False, True])
def test_l2_chart_marks_the_choice_and_the_extended_strengths(at_bound):
    from kubeclr.report.notebook import l2_figure

    grid = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    sweep = [{"l2": s, "val_top1": 0.80 + 0.01 * i, "extended": s not in grid} for i, s in enumerate(grid)]
    sweep += [{"l2": 0.1, "val_top1": 0.9, "extended": True}, {"l2": 1.0, "val_top1": 0.88, "extended": True}]
    img = l2_figure(sweep, 0.1, at_bound=at_bound)
    root = _svg_of(img)
    (mark,) = [line for line in root.iter(NS + "line") if line.get("class") == "mark"]
    best = min(root.iter(NS + "circle"), key=lambda c: float(c.get("cy")))  # the highest point: 0.9 at 0.1
    assert float(mark.get("x1")) == pytest.approx(float(best.get("cx")), abs=0.1)  # the line goes through it
    names = [g.find(NS + "text").text for g in root.iter(NS + "g") if g.get("class") == "legend"]
    assert names[0] == "val top-1" and names[1] == "past the configured grid"
    assert names[2].startswith("chosen L2 = 0.1") and ("bound" in names[2]) == at_bound
    alt = html.unescape(re.search(r'alt="([^"]*)"', img).group(1))
    assert alt == f"Validation accuracy of the linear probe per L2 strength, {names[2]}"
    circles = {
        c: sorted(float(e.get("cx")) for e in root.iter(NS + "circle") if e.get("fill") == color(c)) for c in (0, 1)
    }
    assert len(circles[0]) == 7 and circles[1] == circles[0][-2:]  # the two extended points, in a colour of their own
    data = _data_box(root)
    for box in _legend_boxes(root):
        assert not overlaps(box, data)


def test_ticks_cover_the_data_so_no_point_leaves_the_plot():
    assert nice_ticks(85.85, 102.0)[-1] >= 102.0  # the throughput trend: 100 was its last tick
    for lo, hi in ((0.0, 1.0), (1.0, 3.0), (0.11, 0.93), (-7.2, 13.1), (101.0, 103.0)):
        ticks = nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi


@pytest.mark.skipif(not DEJAVU.exists(), reason="DejaVu Sans is not installed (it comes with Chromium)")
@pytest.mark.parametrize(
    "text",
    ["NT-Xent loss (sampled steps)", "chance log(2B−1) = 3.43", "purple-ring", "a<b & c", "WWW MMM", "日本語…"],
)
def test_text_width_is_at_least_what_the_font_draws(text):
    from PIL import ImageFont

    assert text_width(text) >= ImageFont.truetype(str(DEJAVU), 11).getlength(text)


def _crowded(names, seed=0):
    """Ten classes whose points overlap, two of them ('white', 'purple-ring') at the same median."""
    gen = np.random.default_rng(seed)
    centers = gen.normal(size=(len(names), 2)) * 0.6
    centers[1] = centers[0] + 0.02
    labels = np.repeat(np.arange(len(names)), 30)
    return (centers[labels] + gen.normal(size=(len(labels), 2)) * 0.5).tolist(), labels.tolist()


NAMES = ["white", "purple-ring", "red-square", "blue", "green-dots", "orange", "a<b & c", "cat", "dog", "plane"]


@pytest.mark.parametrize("seed", range(3))
def test_tsne_class_labels_do_not_collide(seed):
    points, labels = _crowded(NAMES, seed)
    root = ET.fromstring(scatter(points, labels, NAMES, title="t-SNE"))
    frame = next(r for r in root.iter(NS + "rect") if r.get("stroke"))
    fx, fy = float(frame.get("x")), float(frame.get("y"))
    fw = float(frame.get("width"))
    texts = [t for t in root.iter(NS + "text") if t.get("class") == "label"]
    assert len(texts) >= len(NAMES) - 2  # crowded, yet nearly every class is named by its points
    boxes = [label_box(float(t.get("x")), float(t.get("y")), t.text) for t in texts]
    for a, b in itertools.combinations(boxes, 2):
        assert not overlaps(a, b), (a, b)
    for x0, y0, x1, y1 in boxes:
        assert fx <= x0 and x1 <= fx + fw and fy <= y0 and y1 <= fy + fw  # inside the plot's frame
    assert {t.text for t in texts} <= set(NAMES)  # escaped in the SVG, parsed back whole
    legend = [t.text for t in root.iter(NS + "text") if t.get("class") is None][1:]  # after the title
    assert legend == NAMES  # every class in the legend, labelled in the plot or not


def test_a_hundred_classes_get_the_legend_only():
    names = [f"class{i:02d}" for i in range(100)]
    svg = scatter([[i, i % 7] for i in range(300)], [i % 100 for i in range(300)], names, title="t")
    assert 'class="label"' not in svg and f"… {100 - (LEGEND_ROWS - 1)} more classes" in svg


def test_view_grid_names_its_three_columns(tmp_path):
    """The section's headers, over a PNG of exactly that many square columns."""
    from kubeclr.config import AugmentConfig
    from kubeclr.report.notebook import VIEW_COLUMNS, views_section
    from kubeclr.report.views import MIN_TILE, PAD, view_grid

    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    uri = view_grid(images, AugmentConfig(), [0.5] * 3, [0.25] * 3, count=4)
    html = views_section(uri, 32)
    heads = re.search(r'<div class="views"[^>]*>((?:<span>[^<]*</span>)+)<img ', html)
    assert heads and re.findall(r"<span>([^<]*)</span>", heads.group(1)) == ["original", "view 1", "view 2"]
    png = base64.b64decode(uri.split(",", 1)[1])
    width, height = struct.unpack(">II", png[16:24])
    tile = (height - PAD) // 4 - PAD
    assert tile >= MIN_TILE and width == len(VIEW_COLUMNS) * (tile + PAD) + PAD
