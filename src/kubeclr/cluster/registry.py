"""Register an exported model with the Kubeflow Model Registry (PyPI ``model-registry``).

One registered model (``registry.model_name``) gets one version per run, named after the run,
whose artifact is the export folder (its URI in the pipeline root) in ONNX format, with the run's
accuracy, config digest and model facts as version metadata. A version name that exists already
is refused by the registry: a run is registered once.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping
from urllib.parse import urlparse

from kubeclr.config import RegistryConfig
from kubeclr.errors import UserError

log = logging.getLogger(__name__)


class RegistryError(UserError):
    """The Model Registry could not be reached or refused the registration."""


def endpoint(url: str) -> tuple[str, int, bool]:
    """``registry.url`` as the client's (address, port, secure).

    Raises:
        UserError: not an http(s) URL with a host.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"registry.url={url!r}: expected http(s)://HOST[:PORT]")
    secure = parsed.scheme == "https"
    return f"{parsed.scheme}://{parsed.hostname}", parsed.port or (443 if secure else 8080), secure


def version_metadata(card: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """What a version records from ``model.json``: accuracy, digests, the model, the data."""
    measured = card.get("metrics") or {}  # none for a run without labels
    linear = measured.get("linear") or {}
    facts = {
        "config_sha256": card["config_sha256"],
        "linear_test_top1": linear.get("test_top1"),
        "linear_val_top1": linear.get("val_top1"),
        "knn_test_top1": measured.get("knn_test_top1"),
        "arch": card["model"]["arch"],
        "width": card["model"]["width"],
        "feature_dim": card["model"]["feature_dim"],
        "input_shape": "x".join(str(d) for d in card["input"]["shape"][1:]),
        "data_format": card["data"]["format"],
        "data_license": card["data"]["license"],
        "train_sha256": card["data"]["train_sha256"],
        "kubeclr_version": card["kubeclr_version"],
    }
    return {k: v for k, v in facts.items() if v is not None}


def register(cfg: RegistryConfig, card: Mapping[str, Any], *, version: str, uri: str) -> dict[str, Any]:
    """Register the export at ``uri`` as version ``version`` of ``cfg.model_name``; return what was registered.

    Raises:
        UserError: a bad ``registry.url``; RegistryError: the registry refused or could not be reached.
    """
    from model_registry import ModelRegistry

    address, port, secure = endpoint(cfg.url)
    metadata = version_metadata(card)
    try:
        client = ModelRegistry(address, port, author=cfg.author, is_secure=secure)
        model = client.register_model(
            cfg.model_name,
            uri,
            version=version,
            model_format_name="onnx",
            model_format_version=str(card["onnx_opset"]),
            version_description=f"SimCLR {card['model']['arch']} encoder, run {version}",
            metadata=metadata,
        )
    except Exception as exc:  # the client raises aiohttp, pydantic and its own errors: one line each
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise RegistryError(f"model registry {cfg.url}: {type(exc).__name__}: {first}") from None
    log.info("registered %s version %s (%s) in %s", cfg.model_name, version, uri, cfg.url)
    return {"registered_model_id": model.id, "name": cfg.model_name, "version": version, "uri": uri, **metadata}
