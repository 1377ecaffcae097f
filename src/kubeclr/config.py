"""Typed, frozen configuration: one dataclass per section.

A config is a preset (``configs/<name>.yaml``, shipped in the wheel as
``kubeclr.presets``) or a user YAML file, plus ``--set section.key=value``
overrides. Values are parsed by the field's declared type; unknown keys, wrong
types and out-of-range values raise :class:`ConfigError` with one line naming
the key and what is allowed.

Leaf functions receive only their own section (``cfg.pretrain``), never the
whole config.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kubeclr.errors import ConfigError, StorageError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def _rule(*, choices: Sequence[Any] | None = None, ge: float | None = None,
          gt: float | None = None, le: float | None = None, help: str = "") -> dict:
    """Field metadata read by :func:`_check_field`."""
    return {"choices": tuple(choices) if choices else None, "ge": ge, "gt": gt, "le": le, "help": help}


def _f(default: Any, **rule: Any) -> Any:
    return field(default=default, metadata=_rule(**rule))


@dataclass(frozen=True)
class DataConfig:
    source: str = _f(CIFAR10_URL, help="https://…, s3://bucket/key, file:///path, a path, or 'sample'")
    md5: str = _f(CIFAR10_MD5, help="expected MD5 of the tarball, or 'none' to skip the check")
    val_split: str = _f("batch5", help="'batch5' (data_batch_5 is validation) or 'random:<fraction>'")
    train_limit: int = _f(0, ge=0, help="stratified subset size of train (0 = all)")
    val_limit: int = _f(0, ge=0, help="stratified subset size of val (0 = all)")
    test_limit: int = _f(0, ge=0, help="stratified subset size of test (0 = all)")
    seed: int = _f(0, ge=0, help="seed for random splits and subsets")
    cache_dir: str = _f("~/.cache/kubeclr", help="local download cache")
    sample_per_class: int = _f(600, ge=2, help="images per class and batch file for the 'sample' source")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = _f("resnet18", choices=("resnet18", "resnet34", "resnet50"))
    width: int = _f(64, ge=4, help="base channels of the first stage (64 = standard ResNet)")
    stem: str = _f("cifar", choices=("cifar", "imagenet"))
    init: str = _f("random", help="'random', 'imagenet', or a URI of a state dict")
    head: str = _f("mlp", choices=("mlp", "linear"))
    proj_hidden: int = _f(0, ge=0, help="hidden width of the MLP head (0 = encoder feature dim)")
    proj_dim: int = _f(128, ge=1)
    proj_final_bn: bool = _f(False, help="BatchNorm after the last head layer (the seed article's head)")
    sync_bn: bool = _f(False, help="SyncBatchNorm under DDP")


@dataclass(frozen=True)
class AugmentConfig:
    size: int = _f(32, ge=8, help="output crop size")
    crop_scale: tuple[float, float] = _f((0.08, 1.0), help="area range of the random resized crop, in (0, 1]")
    flip_p: float = _f(0.5, ge=0, le=1)
    color_strength: float = _f(0.5, ge=0, help="colour distortion strength s")
    color_p: float = _f(0.8, ge=0, le=1)
    grayscale_p: float = _f(0.2, ge=0, le=1)
    blur: bool = _f(False, help="Gaussian blur (off for CIFAR, as in the paper)")


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = _f(100, ge=1)
    batch_size: int = _f(512, ge=2, help="global batch size (all ranks together)")
    optimizer: str = _f("lars", choices=("lars", "sgd", "adamw"))
    lr: float = _f(0.3, gt=0, help="base learning rate: the rate at batch 256 under lr_scaling linear or sqrt")
    lr_scaling: str = _f("linear", choices=("linear", "sqrt", "none"),
                         help="peak lr = lr x B/256 (linear), lr x sqrt(B/256) (sqrt; SimCLR App. B.1's "
                              "0.075 x sqrt(B) is lr=1.2), or lr (none); B = global batch")
    weight_decay: float = _f(1e-6, ge=0)
    momentum: float = _f(0.9, ge=0, le=1)
    trust_coefficient: float = _f(0.001, gt=0, help="LARS eta")
    warmup_epochs: float = _f(10.0, ge=0, help="linear warm-up length in epochs (fractions allowed)")
    warmup_steps: int = _f(0, ge=0, help="linear warm-up length in optimizer steps; > 0 replaces warmup_epochs")
    temperature: float = _f(0.5, gt=0)
    precision: str = _f("bf16", choices=("fp32", "bf16", "fp16"), help="autocast dtype on GPU (CPU always fp32)")
    compile: bool = _f(False, help="torch.compile the model")
    channels_last: bool = _f(True)
    checkpoint_every: int = _f(10, ge=0, help="epochs between checkpoints (0 = only at the end)")
    knn_every: int = _f(0, ge=0, help="kNN monitor every N epochs (0 = off): up to 1,000 train images, "
                                      "held out of the labelled bank, queried against up to 10,000 others")
    seed: int = _f(0, ge=0)
    device: str = _f("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class EvalConfig:
    protocol: str = _f("features", choices=("features", "seed"))
    knn_k: int = _f(200, ge=1)
    knn_temperature: float = _f(0.1, gt=0)
    tsne_points: int = _f(1000, ge=0)
    batch_size: int = _f(512, ge=1, help="batch size of feature extraction")
    l2_grid: tuple[float, ...] = _f((1e-6, 1e-5, 1e-4, 1e-3, 1e-2), help="L2 strengths tried on val")
    max_iter: int = _f(500, ge=1, help="L-BFGS iterations of the logistic regression")
    seed_epochs: int = _f(100, ge=1, help="epochs of the 'seed' protocol's linear layer (100 as in MoCo's main_lincls.py)")
    seed_lr: float = _f(0.1, gt=0)
    finetune: bool = _f(False, help="'seed' protocol: unfreeze the encoder")


@dataclass(frozen=True)
class MetricsConfig:
    pushgateway_url: str = _f("", help="Prometheus Pushgateway URL ('' = off)")
    port: int = _f(0, ge=0, le=65535, help="serve /metrics on this port while a step runs (0 = off)")
    addr: str = _f("0.0.0.0", help="address the /metrics endpoint binds to (tests use 127.0.0.1)")
    job: str = _f("simclr", help="Pushgateway job name")


@dataclass(frozen=True)
class StorageConfig:
    checkpoint_uri: str = _f("", help="file:// or s3:// prefix for pretraining checkpoints ('' = none)")
    mirror_uri: str = _f("", help="s3:// prefix caching the dataset tarball ('' = off)")
    export_uri: str = _f("", help="copy encoder, report and metrics.json here, by run name ('' = off)")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, *, origin: str = "config") -> "Config":
        """Build and validate a config from nested mappings (YAML or JSON)."""
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"{origin}: unknown section '{unknown[0]}' (allowed: {', '.join(sections)})")
        built = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            built[name] = _build_section(section_cls, name, raw.get(name) or {}, origin)
        return cls(**built)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples become lists) for YAML/JSON and KFP parameters."""
        return {f.name: {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                for f in dataclasses.fields(self)}

    def override(self, assignments: Mapping[str, Any] | Sequence[str], origin: str = "--set") -> "Config":
        """Return a copy with ``section.key`` values replaced.

        Args:
            assignments: ``["pretrain.epochs=5", …]`` (strings parsed by the
                field's type) or ``{"pretrain.epochs": 5}`` (typed values).
            origin: where the values came from, for error messages (a flag name).
        """
        pairs = _parse_assignments(assignments) if not isinstance(assignments, Mapping) else dict(assignments)
        raw = self.to_dict()
        for dotted, value in pairs.items():
            section, _, key = dotted.partition(".")
            if section not in raw or not key:
                raise ConfigError(f"--set {dotted}: expected section.key with section one of {', '.join(raw)}")
            if key not in raw[section]:
                raise ConfigError(f"--set {dotted}: unknown key '{key}' in section '{section}' "
                                  f"(allowed: {', '.join(raw[section])})")
            raw[section][key] = value
        return Config.from_dict(raw, origin=origin)


def _parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        dotted, sep, value = str(item).partition("=")
        if not sep or not dotted.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        pairs[dotted.strip()] = value.strip()
    return pairs


def _build_section(section_cls: type, name: str, raw: Any, origin: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: section '{name}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{origin}: unknown key '{name}.{unknown[0]}' (allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(section_cls)
    values = {}
    for key, value in raw.items():
        values[key] = _check_field(f"{name}.{key}", fields[key], hints[key], value, origin)
    return section_cls(**values)


def _check_field(dotted: str, f: dataclasses.Field, hint: Any, value: Any, origin: str) -> Any:
    value = _coerce(dotted, hint, value, origin)
    rule = f.metadata
    allowed = _describe(hint, rule)
    if rule.get("choices") and value not in rule["choices"]:
        raise ConfigError(f"{origin}: {dotted}={value!r} is not allowed ({allowed})")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if (rule.get("ge") is not None and item < rule["ge"]) or \
           (rule.get("gt") is not None and item <= rule["gt"]) or \
           (rule.get("le") is not None and item > rule["le"]):
            raise ConfigError(f"{origin}: {dotted}={value!r} is out of range ({allowed})")
    _check_special(dotted, value, origin)
    return value


_SOURCE_SCHEMES = ("https://", "http://", "s3://", "file://")
_URI_KEYS = ("storage.checkpoint_uri", "storage.mirror_uri", "storage.export_uri", "model.init")


def check_source_scheme(uri: str) -> None:
    """Raise unless ``data.source`` is a form the data step can read (what of it exists is not checked).

    Raises:
        ConfigError: a scheme other than http(s)://, s3:// or file://.
    """
    if "://" in uri and not uri.startswith(_SOURCE_SCHEMES):
        raise ConfigError(f"data.source={uri!r} has an unsupported scheme "
                          "(allowed: http(s)://, s3://, file://, a path, or 'sample')")


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
        from kubeclr.storage import split_uri  # the stores' own rule (imported late: it pulls in numpy)

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
            raise ConfigError(f"{origin}: data.val_split={value!r} is not allowed "
                              "('batch5' or 'random:<fraction in (0,1)>')")
    if dotted == "eval.l2_grid" and (not value or any(v < 0 for v in value)):
        raise ConfigError(f"{origin}: eval.l2_grid must be a non-empty list of non-negative numbers")


def _coerce(dotted: str, hint: Any, value: Any, origin: str) -> Any:
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
        return tuple(_coerce(dotted, item_hint, v, origin) for v in value)
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


def _rule_text(rule: Mapping[str, Any]) -> str:
    """The field's rule in words ('one of a, b', '> 0 and <= 1'), or '' when it has none."""
    if rule.get("choices"):
        return "one of " + ", ".join(map(str, rule["choices"]))
    bounds = [(op, rule.get(key)) for op, key in ((">", "gt"), (">=", "ge"), ("<=", "le"))]
    return " and ".join(f"{op} {value}" for op, value in bounds if value is not None)


def _describe(hint: Any, rule: Mapping[str, Any]) -> str:
    """What a value must be, for error messages."""
    text = _rule_text(rule)
    if text:
        return text if rule.get("choices") else "allowed: " + text
    return rule.get("help") or str(hint)


# -- presets and files --------------------------------------------------------

def preset_names() -> list[str]:
    """Names of the presets shipped in the wheel (``configs/*.yaml``)."""
    return sorted(p.name[:-5] for p in resources.files("kubeclr.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(preset: str | None = "smoke", path: str | Path | None = None,
                overrides: Sequence[str] | Mapping[str, Any] = ()) -> Config:
    """Load a preset or a YAML file, then apply ``--set`` overrides.

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
        name = preset or "smoke"
        if name not in preset_names():
            raise ConfigError(f"unknown preset '{name}' (allowed: {', '.join(preset_names())})")
        origin = f"configs/{name}.yaml"
        text = resources.files("kubeclr.presets").joinpath(f"{name}.yaml").read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return Config.from_dict(raw, origin=origin).override(overrides)


def describe_keys() -> str:
    """Human-readable list of every key, its type, default and rule (for --help)."""
    lines = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint, rule = hints[f.name], _rule_text(f.metadata)
            head = f"  {section.name}.{f.name} ({getattr(hint, '__name__', hint)}, default {f.default!r}"
            lines.append(head + (f", {rule})" if rule else ")") + (f": {f.metadata['help']}"
                                                                  if f.metadata.get("help") else ""))
    return "\n".join(lines)
