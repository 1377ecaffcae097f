"""The ``simclr-pipeline`` command line."""

from kubeclr.cli.commands import main

__all__ = ["main"]
