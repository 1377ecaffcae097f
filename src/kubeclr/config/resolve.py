"""One resolved config per run: pipeline parameters merged into the ``config`` struct, once.

The compiled pipeline has a short list of top-level parameters, what a
researcher changes in the Kubeflow UI (:data:`UI_PARAMS`), and ONE struct
parameter ``config`` that holds every other key. Each key has exactly one home:
:func:`resolve` refuses a key given both ways and a key given neither way, so no
step ever runs on a default it was not given. The resolved config's
:func:`config_digest` is logged by every step and stored in ``metrics.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from kubeclr.config.parse import renamed_sections
from kubeclr.config.schema import Config
from kubeclr.errors import ConfigError


@dataclass(frozen=True)
class UiParam:
    """A top-level pipeline parameter and the config key it sets."""

    name: str
    key: str
    help: str


UI_PARAMS: tuple[UiParam, ...] = (
    UiParam(
        "cifar_source",
        "data.source",
        "The dataset (any data_format): https://…, s3://bucket/key or an s3:// prefix (image folders), "
        "file:///path, a path, 'sample' or 'sample-folder' (synthetic, offline).",
    ),
    UiParam("cifar_md5", "data.md5", "Expected MD5 of the tarball or archive ('none' skips the check)."),
    UiParam(
        "data_format",
        "data.format",
        "Dataset layout: cifar10, cifar100, stl10 or imagefolder (train/<class>/, test/<class>/, unlabeled/).",
    ),
    UiParam("arch", "model.arch", "Encoder: resnet18, resnet34 or resnet50."),
    UiParam("epochs", "pretrain.epochs", "Pretraining epochs."),
    UiParam("batch_size", "pretrain.batch_size", "Global batch size across all GPUs."),
    UiParam("lr", "pretrain.lr", "Base learning rate, scaled to the batch by pretrain.lr_scaling."),
    UiParam("temperature", "pretrain.temperature", "NT-Xent temperature."),
    UiParam(
        "checkpoint_uri",
        "storage.checkpoint_uri",
        "s3:// or file:// prefix for checkpoints; a retried pod resumes from the newest ('' = none).",
    ),
    UiParam("mirror_uri", "storage.mirror_uri", "s3:// prefix caching the dataset tarball ('' = off)."),
    UiParam("export_uri", "storage.export_uri", "Copy encoder, report and metrics.json here by run name ('' = off)."),
    UiParam(
        "history_uri",
        "storage.history_uri",
        "s3:// or file:// prefix of the run history; the gate compares this run with the series' earlier runs.",
    ),
    UiParam(
        "engine",
        "cluster.engine",
        "Multi-node engine when nodes > 1: trainjob (Kubeflow Trainer v2) or pytorchjob (Training Operator v1).",
    ),
)
UI_KEYS = {p.key: p.name for p in UI_PARAMS}


def pipeline_parameters(cfg: Config) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``cfg`` into the UI parameters' values and the ``config`` struct (every other key)."""
    raw = cfg.to_dict()
    ui = {p.name: raw[p.key.split(".")[0]][p.key.split(".")[1]] for p in UI_PARAMS}
    struct = {
        section: {k: v for k, v in keys.items() if f"{section}.{k}" not in UI_KEYS} for section, keys in raw.items()
    }
    return ui, struct


def _given(raw: Mapping[str, Any]) -> set[str]:
    return {f"{s}.{k}" for s, keys in raw.items() if isinstance(keys, Mapping) for k in keys}


def resolve(config: Mapping[str, Any], ui_params: Mapping[str, Any] | None = None, *, origin: str = "config") -> Config:
    """The run's config from the ``config`` struct and the UI parameters.

    Args:
        config: nested ``{section: {key: value}}``. With ``ui_params``: every key
            except the UI parameters' keys. Without: a config resolved before
            (every key), as the first step hands it to the later ones.
        ui_params: ``{name: value}`` for every parameter of :data:`UI_PARAMS`.
        origin: names the source in error messages.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: a key set both as a UI parameter and in ``config``; a key
            set nowhere; an unknown parameter; any invalid key or value.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(config).__name__}")
    for section, keys in config.items():
        if not isinstance(keys, Mapping):
            raise ConfigError(f"{origin}: section '{section}' must be a mapping, got {type(keys).__name__}")
    raw = renamed_sections(config)
    given = _given(raw)
    if ui_params is not None:
        unknown = sorted(set(ui_params) - {p.name for p in UI_PARAMS})
        if unknown:
            raise ConfigError(
                f"unknown pipeline parameter '{unknown[0]}' (allowed: {', '.join(p.name for p in UI_PARAMS)})"
            )
        for p in UI_PARAMS:
            if p.key in given:
                raise ConfigError(
                    f"{p.key} is set twice: by the pipeline parameter '{p.name}' and inside "
                    f"'{origin}'; set it only as the '{p.name}' parameter"
                )
            if p.name not in ui_params:
                raise ConfigError(f"pipeline parameter '{p.name}' ({p.key}) is missing")
        raw = copy.deepcopy(raw)
        for p in UI_PARAMS:
            section, key = p.key.split(".")
            raw.setdefault(section, {})[key] = ui_params[p.name]
        given |= set(UI_KEYS)
    missing = [k for k in Config().dotted_keys() if k not in given]
    if missing:
        hint = (
            "start from the compiled default, which lists every key"
            if ui_params is not None
            else "pass the config the first step resolved"
        )
        raise ConfigError(f"{origin}: key '{missing[0]}' is missing ({len(missing)} missing in all; {hint})")
    return Config.from_dict(raw, origin=origin)


def config_digest(cfg: Config) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, no spaces): equal configs, equal digests."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
