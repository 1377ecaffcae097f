"""The ``resolve_config`` task: the run's config, resolved once, and what each later task is given.

It runs first and is never cached. It merges the UI parameters into the ``config`` struct
(:func:`kubeclr.config.resolve`), fingerprints what the dataset source holds now (the data
step's cache key follows the source's content: :mod:`kubeclr.storage.fingerprint`), and cuts
the resolved config into each cached task's slice: exactly the keys its step ``READS``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from kubeclr.config import config_digest, config_slice, resolve
from kubeclr.steps import reads
from kubeclr.storage.fingerprint import source_fingerprint
from kubeclr.uri import redact_uri

log = logging.getLogger(__name__)


def run(config: Mapping[str, Any], ui_params: Mapping[str, Any], sliced: Sequence[str]) -> tuple:
    """``(config, source fingerprint, *one slice per task of sliced)``.

    Args:
        config: the pipeline's ``config`` struct: every run-time key but the UI parameters'.
        ui_params: the UI parameters, by name.
        sliced: the cached tasks whose slices to return, in this order.

    Raises:
        ConfigError: a key set twice, missing or invalid. DataError: the source does not exist or
            cannot be listed.
    """
    cfg = resolve(config, ui_params, origin="config")
    log.info("resolve_config: config sha256 %s", config_digest(cfg))
    digest = source_fingerprint(cfg.data)
    log.info("resolve_config: %s holds content %s…", redact_uri(cfg.data.source), digest[:16])
    slices = []
    for task in sliced:
        keys = reads(task)
        assert keys is not None, f"{task} has no READS: it cannot run in a cached task"
        slices.append(config_slice(cfg, keys))
    return (cfg.to_dict(), digest, *slices)
