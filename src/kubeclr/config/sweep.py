"""Sweep specs: the trials of a hyper-parameter sweep, checked before anything runs.

A spec is YAML (``--sweep FILE``) and/or ``--sweep-set key=v1,v2`` flags::

    grid:                          # every combination (the paper's lr x temperature grid)
      pretrain.lr: [0.5, 1.0, 1.5]
      pretrain.temperature: [0.1, 0.5, 1.0]
    trials:                        # and/or an explicit list, each crossed with the grid
      - {augment.color_strength: 0.5}
      - {augment.color_strength: 1.0, augment.blur: true}
    parallelism: 3                 # trials at once on a cluster (kfp.local runs them in turn)
    metric: linear_eval.val_top1   # chosen on validation; a test metric is refused
    max_trials: 32                 # budget guard

Every trial's overrides are applied to the base config as ``--set`` would be, so an unknown
key or a bad value is one line naming the trial and the key. A trial may change ``model``,
``augment``, ``pretrain`` and ``eval`` keys; the data, storage and cluster settings are the
sweep's, shared by every trial. ``pretrain.seed`` in a sweep makes
the other settings' results a mean ± std over the seeds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kubeclr.config.schema import Config
from kubeclr.errors import ConfigError

# Selection metrics: validation numbers only (choosing on test would make the test number a
# validation number). The leaderboard reports the winner's test accuracy as the headline.
METRICS = ("linear_eval.val_top1", "linear_eval.val_top5")
DEFAULT_METRIC = "linear_eval.val_top1"
DEFAULT_MAX_TRIALS = 32
SPEC_KEYS = ("grid", "trials", "parallelism", "metric", "max_trials")
SEED_KEY = "pretrain.seed"
# What a trial may change: the trials share the data steps, the storage and the cluster settings,
# and a sweep ends in its leaderboard instead of the report and the gate.
TRIAL_SECTIONS = ("model", "augment", "pretrain", "eval")
_SECTIONS = frozenset(f.name for f in fields(Config))


@dataclass(frozen=True)
class Sweep:
    """Resolved trials: ``overrides[i]`` applied to the base config gives ``configs[i]``."""

    overrides: list[dict[str, Any]]
    configs: list[Config]
    parallelism: int = 1
    metric: str = DEFAULT_METRIC
    max_trials: int = DEFAULT_MAX_TRIALS
    seeds: bool = field(default=False)  # pretrain.seed is swept: report mean ± std over it

    def __len__(self) -> int:
        return len(self.overrides)

    def items(self) -> list[dict[str, Any]]:
        """The ParallelFor's items: ``{"index": i, "overrides": {key: value}}`` per trial."""
        return [{"index": i, "overrides": o} for i, o in enumerate(self.overrides)]

    def spec(self) -> dict[str, Any]:
        """What the leaderboard step needs: the selection metric, whether seeds are swept, the trials."""
        return {"metric": self.metric, "seeds": self.seeds, "trials": self.items()}


def split_values(text: str) -> list[str]:
    """``'0.1,0.5,[0.2,1.0]'`` → ``['0.1', '0.5', '[0.2,1.0]']`` (commas inside brackets are kept)."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return values


def parse_sweep_sets(items: Sequence[str]) -> dict[str, list[Any]]:
    """``['pretrain.lr=0.5,1.0']`` → ``{'pretrain.lr': ['0.5', '1.0']}`` (values parsed per trial, by type).

    Raises:
        ConfigError: no ``=``, no key, or an empty value list.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--sweep-set {item!r}: expected SECTION.KEY=V1,V2,…")
        values = [v for v in split_values(text) if v != ""]
        if not values:
            raise ConfigError(f"--sweep-set {key}: no values (expected {key}=V1,V2,…)")
        grid[key] = values
    return grid


def _read_spec(path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--sweep {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--sweep {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"--sweep {path}: expected a mapping with grid and/or trials")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"--sweep {path}: unknown key '{unknown[0]}' (allowed: {', '.join(SPEC_KEYS)})")
    return dict(raw)


def _int(spec: Mapping[str, Any], key: str, default: int, origin: str) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{origin}: {key}={value!r} must be a whole number >= 1")
    return value


def build_sweep(base: Config, spec_path: str | Path | None = None, sweep_sets: Sequence[str] = ()) -> Sweep:
    """The trials of a sweep over ``base``, every one resolved and checked.

    Raises:
        ConfigError: an unknown key or a bad value (naming the trial), an empty value list, no trials,
            a selection metric on test or unknown, more trials than ``max_trials``.
    """
    origin = f"--sweep {spec_path}" if spec_path else "--sweep-set"
    spec = _read_spec(spec_path) if spec_path else {}
    grid = dict(spec.get("grid") or {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{origin}: grid {key} must be a non-empty list of values")
    grid |= parse_sweep_sets(sweep_sets)
    listed = spec.get("trials") or [{}]
    if not isinstance(listed, list) or not all(isinstance(t, Mapping) for t in listed):
        raise ConfigError(f"{origin}: trials must be a list of {{key: value}} mappings")
    if not grid and listed == [{}]:
        raise ConfigError(f"{origin}: no trials (give a grid, a list of trials, or --sweep-set KEY=V1,V2)")
    metric = spec.get("metric", DEFAULT_METRIC)
    if metric not in METRICS:
        why = "choosing on test makes the test number a validation number" if "test" in str(metric) else "unknown"
        raise ConfigError(f"{origin}: metric={metric!r} is not allowed ({why}; one of {', '.join(METRICS)})")
    max_trials = _int(spec, "max_trials", DEFAULT_MAX_TRIALS, origin)
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    overrides = [{**dict(trial), **combo} for trial in listed for combo in combos]
    if len(overrides) > max_trials:
        raise ConfigError(
            f"{origin}: {len(overrides)} trials, more than max_trials={max_trials} (each trial is a full pretraining)"
        )
    configs = []
    for i, trial in enumerate(overrides):
        for key in trial:
            _check_trial_key(key, origin)
        try:
            configs.append(trial_config(base, trial, origin=f"trial {i}"))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        overrides[i] = {k: _value(configs[-1], k) for k in trial}
        if overrides[i] in overrides[:i]:
            raise ConfigError(f"{origin}: trial {i} repeats trial {overrides.index(overrides[i])} ({overrides[i]})")
    return Sweep(
        overrides=overrides,
        configs=configs,
        parallelism=_int(spec, "parallelism", 1, origin),
        metric=metric,
        max_trials=max_trials,
        seeds=SEED_KEY in grid or any(SEED_KEY in t for t in listed),
    )


def trial_config(base: Config, overrides: Mapping[str, Any], origin: str = "trial") -> Config:
    """``base`` with one trial's overrides: typed values as given, text parsed as ``--set`` parses it.

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    typed = {k: v for k, v in overrides.items() if not isinstance(v, str)}
    texts = [f"{k}={v}" for k, v in overrides.items() if isinstance(v, str)]
    return base.override(typed, origin=origin).override(texts, origin=origin)


def _check_trial_key(key: str, origin: str) -> None:
    section = key.split(".", 1)[0]
    if section in _SECTIONS and section not in TRIAL_SECTIONS:  # unknown ones: override says
        why = (
            "the trials share one download, split and statistics"
            if section == "data"
            else "a sweep sets it once for every trial"
        )
        raise ConfigError(
            f"{origin}: {key} cannot vary between trials ({why}; a trial may set {', '.join(TRIAL_SECTIONS)} keys)"
        )


def _value(cfg: Config, dotted: str) -> Any:
    """A key's resolved value (as the trial will run it: typed, renamed keys followed)."""
    section, key = dotted.split(".", 1)
    return cfg.to_dict()[section][key]
