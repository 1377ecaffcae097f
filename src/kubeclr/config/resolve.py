"""One resolution of the config per run, and the part of it each task is given.

The compiled pipeline has a short list of top-level parameters, what a
researcher changes in the Kubeflow UI (:data:`UI_PARAMS`), and ONE struct
parameter ``config`` that holds every other key. Each key has exactly one home:
:func:`resolve` refuses a key given both ways and a key given neither way, so no
step ever runs on a default it was not given. It runs once per run, in the
never-cached ``resolve_config`` task, which hands each later task only the keys
its step reads (:func:`config_slice`; the step's ``READS``): a task's KFP cache key
then changes exactly when something it reads does. A step sees its slice as a
:meth:`Config.from_dict` view (:func:`task_view`), where reading a key it was not
given is an error, not a default.

The ``metrics`` section is set when the pipeline is compiled: it is observability
wiring, not part of what a task computes, so it travels in every task's
environment (:data:`METRICS_ENV`) and never in a cache key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from kubeclr.config.schema import Config
from kubeclr.errors import ConfigError

# Sections fixed at compile time and carried in every task's environment, never in a cache key.
COMPILE_TIME = ("metrics",)
METRICS_ENV = "KUBECLR_METRICS"


@dataclass(frozen=True)
class UiParam:
    """A top-level pipeline parameter and the config key it sets."""

    name: str
    key: str
    help: str

    @property
    def type(self) -> type:
        """The parameter's Python type: its config key's (str, int or float)."""
        import typing

        section, key = self.key.split(".")
        return typing.get_type_hints(type(getattr(Config(), section)))[key]


UI_PARAMS: tuple[UiParam, ...] = (
    UiParam(
        "data_source",
        "data.source",
        "The dataset (any data_format): https://…, s3://bucket/key or an s3:// prefix (image folders, shards), "
        "file:///path, a path, 'sample' or 'sample-folder' (synthetic, offline).",
    ),
    UiParam("data_md5", "data.md5", "Expected MD5 of the tarball or archive ('none' skips the check)."),
    UiParam(
        "data_format",
        "data.format",
        "Dataset layout: cifar10, cifar100, stl10, imagefolder (train/<class>/, test/<class>/, unlabeled/; "
        "or unlabeled/ alone) or webdataset (train-*.tar, test-*.tar shards).",
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
# The parameters' names before 0.3 (they named the source of every format after CIFAR): still accepted by
# `submit`/`schedule --param` and the CLI flags, with a note.
UI_ALIASES = {"cifar_source": "data_source", "cifar_md5": "data_md5"}


def pipeline_parameters(cfg: Config) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``cfg`` into the UI parameters' values and the ``config`` struct (every other run-time key)."""
    raw = cfg.to_dict()
    ui = {p.name: raw[p.key.split(".")[0]][p.key.split(".")[1]] for p in UI_PARAMS}
    struct = {
        section: {k: v for k, v in keys.items() if f"{section}.{k}" not in UI_KEYS}
        for section, keys in raw.items()
        if section not in COMPILE_TIME
    }
    return ui, struct


def compile_time_env(cfg: Config) -> dict[str, str]:
    """The environment every task of a pipeline compiled from ``cfg`` carries: its compile-time sections."""
    return {METRICS_ENV: json.dumps(cfg.to_dict()["metrics"], sort_keys=True)}


def compile_time_sections() -> dict[str, dict[str, Any]]:
    """The compile-time sections of this task's pipeline, from its environment (the defaults outside one)."""
    text = os.environ.get(METRICS_ENV)
    if not text:
        return {"metrics": Config().to_dict()["metrics"]}
    try:
        return {"metrics": json.loads(text)}
    except ValueError:
        raise ConfigError(f"{METRICS_ENV}: not JSON (the pipeline sets it at compile time): {text[:80]!r}") from None


def _given(raw: Mapping[str, Any]) -> set[str]:
    return {f"{s}.{k}" for s, keys in raw.items() if isinstance(keys, Mapping) for k in keys}


def resolve(config: Mapping[str, Any], ui_params: Mapping[str, Any] | None = None, *, origin: str = "config") -> Config:
    """The run's config from the ``config`` struct and the UI parameters.

    Args:
        config: nested ``{section: {key: value}}``. With ``ui_params``: every key
            except the UI parameters' and the compile-time sections' (those come from this
            task's environment). Without: a whole config (every key), e.g. a resolved one.
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
    raw = {section: dict(keys) for section, keys in config.items()}
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
        for section in COMPILE_TIME:
            if section in raw:
                raise ConfigError(
                    f"{origin}: section '{section}' is set when the pipeline is compiled "
                    f"(simclr-pipeline compile --set {section}.KEY=VALUE), not in the run's config"
                )
        raw = copy.deepcopy(raw)
        for p in UI_PARAMS:
            section, key = p.key.split(".")
            raw.setdefault(section, {})[key] = ui_params[p.name]
        raw |= compile_time_sections()
        given = _given(raw)
    missing = [k for k in Config().dotted_keys() if k not in given]
    if missing:
        hint = (
            "start from the compiled default, which lists every key"
            if ui_params is not None
            else "pass a whole config, every key"
        )
        raise ConfigError(f"{origin}: key '{missing[0]}' is missing ({len(missing)} missing in all; {hint})")
    return Config.from_dict(raw, origin=origin)


def config_digest(cfg: Config) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, no spaces): equal configs, equal digests."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def restrict(cfg: Config, reads: Iterable[str]) -> Config:
    """The view of ``cfg`` that a task reading ``reads`` (sections and ``section.key`` names) is given.

    The compile-time sections are part of every view: each task has them in its environment.
    """
    raw, sliced = cfg.to_dict(), {}
    for name in (*reads, *COMPILE_TIME):
        section, _, key = name.partition(".")
        if key:
            sliced.setdefault(section, {})[key] = raw[section][key]
        else:
            sliced[section] = dict(raw[section])
    return Config.from_dict(sliced, partial=True)


def config_slice(cfg: Config, reads: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What crosses the task boundary for a task reading ``reads``: its keys, less the compile-time sections."""
    return {s: keys for s, keys in restrict(cfg, reads).to_dict().items() if s not in COMPILE_TIME}


def task_view(config: Mapping[str, Any], *, origin: str = "config") -> Config:
    """A step's config: the slice its task received plus the compile-time sections of its environment.

    Raises:
        ConfigError: the slice is not a mapping of sections, or holds an invalid key or value.
    """
    if not isinstance(config, Mapping) or not all(isinstance(v, Mapping) for v in config.values()):
        raise ConfigError(f"{origin}: expected a mapping of sections")
    return Config.from_dict({**config, **compile_time_sections()}, origin=origin, partial=True)
