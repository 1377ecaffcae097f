"""The ``fingerprint`` task: what the dataset source holds now, as the data step's cache key.

It runs before the data step and is never cached (:mod:`kubeclr.storage.fingerprint`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from kubeclr.config import Config
from kubeclr.storage.fingerprint import source_fingerprint
from kubeclr.uri import redact_uri

log = logging.getLogger(__name__)


def run(config: Mapping[str, Any], source: str, md5: str, data_format: str) -> str:
    """The digest of ``source``'s content, read as ``data_format``.

    Args:
        config: the pipeline's ``config`` struct; its ``data`` section is used (sample size, seed).
        source, md5, data_format: the UI parameters ``cifar_source``, ``cifar_md5``, ``data_format``.

    Raises:
        ConfigError: an invalid data section. DataError: the source does not exist or cannot be listed.
    """
    data = {**(config.get("data") or {}), "source": source, "md5": md5, "format": data_format}
    digest = source_fingerprint(Config.from_dict({"data": data}, origin="config").data)
    log.info("fingerprint: %s holds content %s…", redact_uri(source), digest[:16])
    return digest
