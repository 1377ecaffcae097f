"""Presets and config files: YAML in, a validated :class:`~kubeclr.config.schema.Config` out."""

from __future__ import annotations

import dataclasses
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kubeclr.config.parse import rule_text
from kubeclr.config.schema import Config
from kubeclr.errors import ConfigError

DEFAULT_PRESET = "smoke"


def preset_names() -> list[str]:
    """Names of the presets shipped in the wheel (``configs/*.yaml``)."""
    return sorted(p.name[:-5] for p in resources.files("kubeclr.presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> tuple[str, str]:
    """``(origin, YAML text)`` of a shipped preset.

    Raises:
        ConfigError: no such preset.
    """
    if name not in preset_names():
        raise ConfigError(f"unknown preset '{name}' (allowed: {', '.join(preset_names())})")
    return f"configs/{name}.yaml", resources.files("kubeclr.presets").joinpath(f"{name}.yaml").read_text()


def load_config(
    preset: str | None = DEFAULT_PRESET,
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Config:
    """Load a preset or a YAML (or JSON) file, then apply ``--set`` overrides.

    Raises:
        ConfigError: unknown preset, unreadable file, or any invalid key/value.
    """
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    else:
        origin, text = preset_text(preset or DEFAULT_PRESET)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return Config.from_dict(raw, origin=origin).override(overrides)


def key_rows() -> list[tuple[str, str, Any, str, str]]:
    """``(section.key, type, default, rule, help)`` of every key, in declaration order."""
    rows = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            rows.append(
                (
                    f"{section.name}.{f.name}",
                    str(getattr(hint, "__name__", hint)),
                    f.default,
                    rule_text(f.metadata),
                    f.metadata.get("help", ""),
                )
            )
    return rows


def describe_keys(cfg: Config | None = None) -> str:
    """Human-readable list of every key, its type, default and rule (``simclr-pipeline keys``).

    Args:
        cfg: a preset's or file's config: each line then starts with its value, ``key = value (…)``.
    """
    lines = []
    for key, kind, default, rule, help_text in key_rows():
        section, name = key.split(".")
        value = "" if cfg is None else f" = {getattr(getattr(cfg, section), name)!r}"
        head = f"  {key}{value} ({kind}, default {default!r}"
        lines.append(head + (f", {rule})" if rule else ")") + (f": {help_text}" if help_text else ""))
    return "\n".join(lines)
