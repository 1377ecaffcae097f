"""The ``simclr-pipeline`` command line (placeholder, filled by the pipeline issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("simclr-pipeline: not built yet", file=sys.stderr)
    return 1
