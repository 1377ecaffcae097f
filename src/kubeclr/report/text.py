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
            + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(c)}</td>" for i, c in enumerate(row))
            + "</tr>"
        )
    return "".join(out) + "</table>"
