"""The ``register_model`` step: the export folder as a new version in the Kubeflow Model Registry.

Added to the pipeline when ``registry.url`` is set at compile time; a run whose resolved config
has no ``registry.url`` skips it (and says so).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeclr.atomic import read_json, write_json
from kubeclr.cluster.registry import register
from kubeclr.config import Config

log = logging.getLogger(__name__)


def run(cfg: Config, model_dir: str | Path, model_uri: str, result_out: str | Path, *, run_name: str) -> dict:
    """Register the export folder (``model_uri``: where the registry's users find it) as version ``run_name``."""
    if not cfg.registry.url:
        result = {"registered": False, "reason": "registry.url is not set"}
        log.warning("not registered: registry.url is not set")
    else:
        card = read_json(Path(model_dir) / "model.json")
        result = {"registered": True, **register(cfg.registry, card, version=run_name, uri=model_uri)}
    write_json(result_out, result)
    return result
