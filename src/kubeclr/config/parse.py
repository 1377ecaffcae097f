"""Parsing and checking config values: types, ranges, choices, URIs.

Every field of the section dataclasses (:mod:`kubeclr.config.schema`) is made
by :func:`option`, which records its rule (choices, bounds, help) in the field
metadata; :func:`check_field` parses a YAML scalar or a ``--set`` string by the
field's declared type and enforces the rule. Every failure is one
:class:`~kubeclr.errors.ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import typing
from dataclasses import field
from typing import Any, Mapping, Sequence

import yaml

from kubeclr.errors import ConfigError, StorageError
from kubeclr.uri import split_uri

log = logging.getLogger(__name__)


def option(
    default: Any,
    *,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    help: str = "",
) -> Any:
    """A config field with its rule, read back by :func:`check_field` and ``simclr-pipeline keys``."""
    rule = {"choices": tuple(choices) if choices else None, "ge": ge, "gt": gt, "le": le, "help": help}
    return field(default=default, metadata=rule)


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["section.key=value", …]`` as ``{"section.key": "value"}`` (values still strings)."""
    pairs: dict[str, Any] = {}
    for item in items:
        dotted, sep, value = str(item).partition("=")
        if not sep or not dotted.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        pairs[dotted.strip()] = value.strip()
    return pairs


def build_section(section_cls: type, name: str, raw: Any, origin: str) -> Any:
    """One section dataclass from its mapping; unknown keys and bad values raise :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: section '{name}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{origin}: unknown key '{name}.{unknown[0]}' (allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(section_cls)
    values = {}
    for key, value in raw.items():
        values[key] = check_field(f"{name}.{key}", fields[key], hints[key], value, origin)
    return section_cls(**values)


def check_field(dotted: str, f: dataclasses.Field, hint: Any, value: Any, origin: str) -> Any:
    value = coerce(dotted, hint, value, origin)
    rule = f.metadata
    allowed = describe(hint, rule)
    if rule.get("choices") and value not in rule["choices"]:
        raise ConfigError(f"{origin}: {dotted}={value!r} is not allowed ({allowed})")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if (
            (rule.get("ge") is not None and item < rule["ge"])
            or (rule.get("gt") is not None and item <= rule["gt"])
            or (rule.get("le") is not None and item > rule["le"])
        ):
            raise ConfigError(f"{origin}: {dotted}={value!r} is out of range ({allowed})")
    _check_special(dotted, value, origin)
    return value


_SOURCE_SCHEMES = ("https://", "http://", "s3://", "file://")
_URI_KEYS = ("storage.checkpoint_uri", "storage.mirror_uri", "storage.export_uri", "storage.history_uri", "model.init")


def check_source_scheme(uri: str) -> None:
    """Raise unless ``data.source`` is a form the data step can read (what of it exists is not checked).

    Raises:
        ConfigError: a scheme other than http(s)://, s3:// or file://.
    """
    if "://" in uri and not uri.startswith(_SOURCE_SCHEMES):
        raise ConfigError(
            f"data.source={uri!r} has an unsupported scheme "
            "(allowed: http(s)://, s3://, file://, a path, 'sample' or 'sample-folder')"
        )


def parse_md5(value: str) -> str | None:
    """``data.md5`` as lowercase hex, or None for ``none``.

    Raises:
        ConfigError: neither 32 hex digits nor ``none``.
    """
    given, value = value, value.strip().lower()
    if value == "none":
        return None
    if not re.fullmatch(r"[0-9a-f]{32}", value):
        raise ConfigError(f"data.md5={given!r} is not allowed (32 hex digits or 'none')")
    return value


def _check_special(dotted: str, value: Any, origin: str) -> None:
    """Constraints that span more than one bound, and the formats of hashes and URIs."""
    if dotted in ("data.md5", "data.source"):
        try:
            parse_md5(value) if dotted == "data.md5" else check_source_scheme(value)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    if dotted in _URI_KEYS and value:
        try:
            split_uri(value)
        except StorageError as exc:
            raise ConfigError(f"{origin}: {dotted}: {exc}") from None
    if dotted == "augment.crop_scale":
        lo, hi = value
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"{origin}: augment.crop_scale={list(value)} must satisfy 0 < min <= max <= 1")
    if dotted == "data.val_split" and value != "batch5":
        kind, _, frac = value.partition(":")
        try:
            ok = kind == "random" and 0 < float(frac) < 1
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"{origin}: data.val_split={value!r} is not allowed ('batch5' or 'random:<fraction in (0,1)>')"
            )
    if dotted in ("augment.size", "data.image_size") and 0 < value < 8:
        raise ConfigError(f"{origin}: {dotted}={value} is too small (0 = automatic, else at least 8)")
    if dotted == "eval.l2_grid" and (not value or any(v < 0 for v in value)):
        raise ConfigError(f"{origin}: eval.l2_grid must be a non-empty list of non-negative numbers")


def coerce(dotted: str, hint: Any, value: Any, origin: str) -> Any:
    """Parse ``value`` (YAML scalar or --set string) into the field's type."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{origin}: {dotted}={value!r} is not {expected}")

    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value if value.strip().startswith("[") else f"[{value}]")
            except yaml.YAMLError:
                raise fail("a list") from None
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and len(value) != len(args):
            raise fail(f"a list of {len(args)} numbers")
        item_hint = args[0]
        return tuple(coerce(dotted, item_hint, v, origin) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise fail("a boolean (true/false)")
    if hint is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise fail("an integer") from None
        raise fail("an integer")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise fail("a number")
        try:
            number = float(value)
        except ValueError:
            raise fail("a number") from None
        if not math.isfinite(number):
            raise fail("a finite number")
        return number
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail("a string")
    raise ConfigError(f"{origin}: {dotted} has an unsupported type {hint}")  # a bug, not user input


def rule_text(rule: Mapping[str, Any]) -> str:
    """The field's rule in words ('one of a, b', '> 0 and <= 1'), or '' when it has none."""
    if rule.get("choices"):
        return "one of " + ", ".join(map(str, rule["choices"]))
    bounds = [(op, rule.get(key)) for op, key in ((">", "gt"), (">=", "ge"), ("<=", "le"))]
    return " and ".join(f"{op} {value}" for op, value in bounds if value is not None)


def describe(hint: Any, rule: Mapping[str, Any]) -> str:
    """What a value must be, for error messages."""
    text = rule_text(rule)
    if text:
        return text if rule.get("choices") else "allowed: " + text
    return rule.get("help") or str(hint)
