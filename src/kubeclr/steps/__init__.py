"""Step functions: what each pipeline component calls, one call per step.

A step that runs in a cached task declares ``READS``: the config sections (``"model"``) and
single keys (``"storage.mirror_uri"``) it reads. The ``resolve_config`` task hands it exactly
those, so its KFP cache key changes only when one of them does, and reading any other key is an
error (:class:`kubeclr.config.schema.NotGivenError`). The steps of never-cached tasks (the report,
the gate, deployment, registration, a sweep's trial config and leaderboard) receive the whole config.
"""

from __future__ import annotations

import importlib

# The six steps of the pipeline, in DAG order (docs/architecture.md).
STEPS = ("download_split", "compute_stats", "pretrain", "extract_features", "linear_eval", "report")


def reads(step: str) -> tuple[str, ...] | None:
    """What ``step`` reads of the config (its ``READS``), or None: it reads the whole config."""
    return getattr(importlib.import_module(f"kubeclr.steps.{step}"), "READS", None)
