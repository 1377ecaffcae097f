"""Checks of what a user passes to the KFP API, done before any request.

KFP cron expressions have 6 fields, seconds first (robfig/cron), see
https://pkg.go.dev/github.com/robfig/cron#hdr-CRON_Expression_Format.
Run parameters are checked against the compiled pipeline's root inputs.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from kubeclr.errors import UserError

CRON_EXAMPLE = "'0 0 3 * * *' (03:00:00 every day)"
CRON_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_CRON_NAMES = {
    4: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],  # -> 1..12
    5: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],  # -> 0..6
}
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_GO_DURATION = re.compile(r"^@every (\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
MAX_CONCURRENCY = 10  # the KFP API server rejects recurring runs outside 1..10
# object stores a KFP v2 launcher writes artifacts to (its pipeline root); a local path would be each pod's own
PIPELINE_ROOT_SCHEMES = ("s3://", "gs://", "minio://")


class KfpError(UserError):
    """The KFP API server is unreachable, refused a request, or was given bad input."""


def validate_cron(expr: str) -> str:
    """Check a KFP (robfig/cron) expression before anything is sent.

    A 5-field Unix cron is rejected on purpose: robfig/cron would read it with
    *seconds first* and run at the wrong times, silently.

    Args:
        expr: ``"second minute hour day-of-month month day-of-week"``, or a
            descriptor such as ``@daily`` / ``@every 6h``.

    Returns:
        The expression with whitespace normalised.

    Raises:
        KfpError: wrong field count or a field out of range, naming the field.
    """
    text = " ".join(str(expr).split())
    if text.startswith("@"):
        if text.lower() in _CRON_DESCRIPTORS or _GO_DURATION.match(text):
            return text
        raise KfpError(
            f"bad cron {expr!r}: unknown descriptor; use @hourly/@daily/@weekly/@monthly/"
            f"@yearly, '@every 6h', or 6 fields '{' '.join(CRON_FIELDS)}', e.g. {CRON_EXAMPLE}"
        )
    fields = text.split(" ") if text else []
    if len(fields) != 6:
        raise KfpError(
            f"bad cron {expr!r}: KFP cron needs 6 fields '{' '.join(CRON_FIELDS)}' "
            f"(seconds first), got {len(fields)}; e.g. {CRON_EXAMPLE}"
        )
    for index, field in enumerate(fields):
        problem = _cron_field_problem(field, index)
        if problem:
            raise KfpError(
                f"bad cron {expr!r}: {CRON_FIELDS[index]} field {field!r} {problem}; "
                f"fields are '{' '.join(CRON_FIELDS)}', e.g. {CRON_EXAMPLE}"
            )
    return text


def _cron_field_problem(field: str, index: int) -> str | None:
    """Return why one cron field is invalid, or None when it is fine."""
    low, high = _CRON_BOUNDS[index]
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return f"has a bad step {step!r}"
        if base in ("*", "?"):
            if base == "?" and index not in (3, 5):
                return "uses '?', allowed only for day-of-month and day-of-week"
            continue
        ends = base.split("-")
        if len(ends) > 2 or not all(ends):
            return f"has a bad range {base!r}"
        values = [_cron_value(end, index) for end in ends]
        if any(v is None or not low <= v <= high for v in values):
            return f"must be within {low}-{high}"
        if len(values) == 2 and values[0] > values[1]:
            return f"has a descending range {base!r}"
    return None


def _cron_value(token: str, index: int) -> int | None:
    if token.isdigit():
        return int(token)
    names = _CRON_NAMES.get(index, [])
    if token.lower() in names:
        return names.index(token.lower()) + (1 if index == 4 else 0)
    return None


def rfc3339(value: str | None, what: str) -> str | None:
    """Parse an ISO 8601 time (naive = UTC) and return it as RFC 3339 UTC."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise KfpError(f"bad {what} {value!r}: use ISO 8601, e.g. 2030-01-31T03:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_pipeline_root(uri: str | None, what: str = "pipeline root") -> str | None:
    """``uri`` if it is a pipeline root the cluster's pods can write (None or '' = the cluster's default).

    Raises:
        KfpError: one line naming ``what``, for anything but ``s3://bucket/…``, ``gs://bucket/…`` or ``minio://bucket/…``.
    """
    if not uri:
        return uri
    scheme = next((s for s in PIPELINE_ROOT_SCHEMES if uri.startswith(s)), None)
    if scheme is None or not uri[len(scheme) :].split("/", 1)[0]:
        raise KfpError(
            f"{what} {uri}: not an object-store URI the cluster can write (use s3://bucket/prefix, "
            "gs://bucket/prefix or minio://bucket/prefix; local runs keep artifacts in run --local --workdir)"
        )
    return uri


def load_pipeline_spec(package_path: str | os.PathLike) -> dict:
    """Read the PipelineSpec (first YAML document) of a compiled package.

    Raises:
        KfpError: the file is missing, not YAML, or not a compiled pipeline.
    """
    path = Path(package_path)
    if path.suffix not in (".yaml", ".yml"):
        raise KfpError(f"pipeline package {path} must be a compiled .yaml (simclr-pipeline compile)")
    try:
        with path.open("r", encoding="utf-8") as stream:
            spec = next(iter(yaml.safe_load_all(stream)), None)
    except FileNotFoundError:
        raise KfpError(f"pipeline package not found: {path} (run simclr-pipeline compile)") from None
    except yaml.YAMLError as error:
        raise KfpError(f"pipeline package {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise KfpError(f"{path} is not a compiled KFP pipeline (no 'root'/'pipelineInfo')")
    return spec


def validate_params(params: dict, pipeline_spec: dict) -> dict:
    """Check run parameters against the pipeline's root inputs and coerce their types.

    Args:
        params: name -> value; values may be strings as typed on a command line.
        pipeline_spec: the compiled PipelineSpec dict (:func:`load_pipeline_spec`).

    Returns:
        A new dict with values converted to the declared KFP parameter types.

    Raises:
        KfpError: an unknown name (with a "did you mean"), a missing required
            parameter, or a value that does not convert to the declared type.
    """
    declared = pipeline_spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    allowed = sorted(declared)
    coerced = {}
    for name, value in params.items():
        if name not in declared:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KfpError(f"unknown pipeline parameter {name!r}{hint}; allowed: {', '.join(allowed) or 'none'}")
        kind = declared[name].get("parameterType", "STRING")
        coerced[name] = _coerce(name, value, kind)
    missing = [
        n
        for n in allowed
        if n not in coerced and not declared[n].get("isOptional") and "defaultValue" not in declared[n]
    ]
    if missing:
        raise KfpError(f"missing required pipeline parameter(s): {', '.join(missing)}")
    return coerced


def _coerce(name: str, value: Any, kind: str) -> Any:
    """Convert one value to a KFP parameter type (STRING, NUMBER_INTEGER, ...)."""
    try:
        if kind == "STRING":
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "BOOLEAN":
            if isinstance(value, bool):
                return value
            words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            return words[str(value).strip().lower()]
        if kind == "NUMBER_INTEGER":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if kind == "NUMBER_DOUBLE":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind in ("STRUCT", "LIST"):
            parsed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict if kind == "STRUCT" else list):
                raise ValueError
            return parsed
    except (ValueError, KeyError, TypeError):
        raise KfpError(f"pipeline parameter {name!r}={value!r} is not a valid {kind}") from None
    raise KfpError(f"pipeline parameter {name!r} has an unsupported type {kind}")
