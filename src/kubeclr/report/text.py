"""Escaping and tables for the report: every user string passes through here on its way to HTML or Markdown."""

from __future__ import annotations

import html
import re
from typing import Any, Sequence


def md_escape(text: object) -> str:
    """Neutralise HTML and Markdown syntax in a user string (one line)."""
    # quote=False: an entity like &#x27; would carry a '#' into the Markdown escapes below
    text = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([\\`*_\[\]{}()#+!|~>-])", r"\\\1", text)


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
