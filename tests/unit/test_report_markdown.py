"""report.md's escaping, checked with a CommonMark + GFM renderer as the oracle: plain run names
and prose come out as written, and hostile ones render as their own text and nothing else."""

import html
import re

import pytest

from kubeclr.report.text import md_escape

markdown_it = pytest.importorskip("markdown_it")  # dev dependency (pinned in images/requirements-dev.lock)

GFM = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

PLAIN = [
    "simclr-smoke-2026-12-04",
    "0 earlier run(s) read from file:///tmp/history",
    "storage.history_uri",
    "resnet18-e100-b512-84733940bd",
    "pretraining 64 (24 labelled + 40 unlabelled); evaluation train/val/test 24/6/20",
    "bob's run #1",
    "a > b, 100% - 5",
    "2026.11 run",
    "s3://bucket/kubeclr/history",
    "a ≤ b & c",
]

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<!-- hidden -->",
    "<http://evil.example>",
    "[click](http://evil.example)",
    "![x](http://evil.example/x.png)",
    "[x]: http://evil.example",
    "a | b | c",
    "*bold* _it_ __b__ **b**",
    "`code` ``more``",
    "~~gone~~",
    "# heading",
    "> quote",
    "- item",
    "+ item",
    "* item",
    "1. item",
    "2) item",
    "---",
    "===",
    "name ##",
    "a\\*b\\",
    "&amp; &#x27; &lt;",
    "_x_",
    "a<b & c",
]


def _text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


def _tags(rendered: str) -> set[str]:
    return set(re.findall(r"<(\w+)", rendered))


@pytest.mark.parametrize("text", PLAIN)
def test_plain_text_is_left_as_it_reads(text):
    assert md_escape(text) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_as_its_own_text_wherever_it_stands(text):
    escaped = md_escape(text)
    for doc, shown, structure in (
        (escaped, text, {"p"}),  # at a line's start
        (f"# SimCLR run {escaped}", f"SimCLR run {text}", {"h1"}),  # the title
        (f"**Dataset**: {escaped}; more.", f"Dataset: {text}; more.", {"p", "strong"}),
        (f"| {escaped} | 1.0 |\n|---|---|\n| {escaped} | 1.0 |\n", None, {"table", "thead", "tbody", "tr", "th", "td"}),
    ):
        rendered = GFM.render(doc)
        assert _tags(rendered) <= structure, (doc, rendered)  # no link, image, emphasis, code, list or HTML
        if shown is None:  # a table: header and row keep their two cells, the first one holds the text
            cells = re.findall(r"<t[hd]>(.*?)</t[hd]>", rendered, re.S)
            assert [_text(c) for c in cells] == [text, "1.0", text, "1.0"], rendered
        else:
            assert _text(rendered) == shown, rendered


def test_whitespace_cannot_start_a_new_block():
    escaped = md_escape("run\n\n# injected\n| a | b |\n|---|---|")
    assert "\n" not in escaped and _tags(GFM.render(escaped)) == {"p"}
