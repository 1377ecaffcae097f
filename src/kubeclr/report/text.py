"""Escaping and tables for the report: every user string passes through here on its way to HTML or Markdown."""

from __future__ import annotations

import html
import re
from typing import Any, Sequence

# Markdown (CommonMark + GFM) syntax a one-line user string could carry, each escaped only where it
# is syntax: plain words, hyphens, dots and parentheses pass through unchanged.
_MD_ANYWHERE = re.compile(
    r"\\(?=[!-/:-@\[-`{-~]|$)"  # a backslash that would escape what follows (ASCII punctuation, or our text)
    r"|[*`\[\]~|]"  # emphasis, code spans, links and images, strikethrough, table cells (GFM)
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # '_' emphasises at a word's edge, never inside one (snake_case)
)
_MD_LINE_START = re.compile(r"^(?:[#>]|[-+=](?=[-+= ]|$)|\d{1,9}[.)](?= |$))")  # heading, quote, list, rule, underline
_MD_HEADING_END = re.compile(r"(?<= )#+$")  # an ATX heading's closing sequence would be dropped


def md_escape(text: object) -> str:
    """Neutralise HTML and Markdown syntax in a user string, leaving plain text as it reads.

    The string becomes one line (whitespace collapsed). ``<`` and an entity's ``&`` become
    entities, so no tag, comment or autolink can open; Markdown punctuation is backslash-escaped
    only where it would be syntax: ``*``, backticks, ``[``/``]`` (links, images), ``~``, ``|``
    (a table cell's edge, in any line that is or may be a table row) and a backslash before
    punctuation anywhere; ``_`` at a word's edge; ``#``, ``>``, ``+``, ``=``, ``-`` and ``1.`` at
    the start; a trailing `` #`` run (a heading would drop it). ``simclr-smoke (night)`` stays as
    it is.
    """
    text = " ".join(str(text).split())
    text = re.sub(r"&(?=#?\w+;)", "&amp;", text).replace("<", "&lt;")
    text = _MD_ANYWHERE.sub(lambda m: "\\" + m.group(0), text)
    text = _MD_LINE_START.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], text, count=1)
    return _MD_HEADING_END.sub(lambda m: "\\" + m.group(0), text)


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


_BREAK_AFTER = re.compile(r"([./_:=,-]+)(?![\d\s])")  # after separators (keys, URIs, paths), not inside numbers
_LONG_RUN = re.compile(r"([0-9A-Za-z]{16})(?=[0-9A-Za-z])")  # hashes and other long unbroken words


def breakable(text: object) -> str:
    """:func:`escape`, with line-break opportunities (``<wbr>``) after separators and every 16
    characters of a long word, so a narrow screen wraps ``storage.checkpoint_uri`` or a SHA-256 at
    sensible points instead of anywhere in a word."""
    parts = re.split(r"(&[a-z]+;|&#x?[0-9a-f]+;)", escape(text))  # never split an entity
    out = []
    for part in parts:
        if part.startswith("&") and part.endswith(";"):
            out.append(part)
            continue
        part = _LONG_RUN.sub(r"\1<wbr>", part)
        out.append(_BREAK_AFTER.sub(r"\1<wbr>", part))
    return "".join(out)


def table(rows: Sequence[Sequence[Any]], head: Sequence[str] = (), numeric: Sequence[int] = ()) -> str:
    out = ["<table>"]
    if head:
        out.append(
            "<tr>"
            + "".join(f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(head))
            + "</tr>"
        )
    for row in rows:
        out.append(
            "<tr>"
            + "".join(
                f"<td class=num>{escape(c)}</td>" if i in numeric else f"<td>{breakable(c)}</td>"
                for i, c in enumerate(row)
            )
            + "</tr>"
        )
    return "".join(out) + "</table>"
