"""Typed, frozen configuration: one dataclass per section, one resolved config per run.

- :mod:`~kubeclr.config.schema` — the sections and their rules
- :mod:`~kubeclr.config.data` — the data section, dataset formats and their canonical downloads
- :mod:`~kubeclr.config.parse` — parsing and checking values
- :mod:`~kubeclr.config.load` — presets, YAML files, ``--set`` overrides, the key list
- :mod:`~kubeclr.config.resolve` — pipeline parameters + the ``config`` struct → one config; each task's slice
"""

from kubeclr.config.data import CANONICAL, CIFAR10_MD5, CIFAR10_URL, DataConfig, check_folder_source, stored_size
from kubeclr.config.load import DEFAULT_PRESET, describe_keys, load_config, preset_names
from kubeclr.config.parse import check_source_scheme, parse_md5
from kubeclr.config.resolve import (
    UI_PARAMS,
    compile_time_env,
    config_digest,
    config_slice,
    pipeline_parameters,
    resolve,
    restrict,
    task_view,
)
from kubeclr.config.schema import (
    AugmentConfig,
    ClusterConfig,
    Config,
    DeployConfig,
    EvalConfig,
    GateConfig,
    MetricsConfig,
    ModelConfig,
    PretrainConfig,
    RegistryConfig,
    ReportConfig,
    StorageConfig,
)

__all__ = [
    "CANONICAL",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DEFAULT_PRESET",
    "UI_PARAMS",
    "AugmentConfig",
    "ClusterConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "DeployConfig",
    "GateConfig",
    "MetricsConfig",
    "ModelConfig",
    "PretrainConfig",
    "RegistryConfig",
    "ReportConfig",
    "StorageConfig",
    "check_folder_source",
    "check_source_scheme",
    "stored_size",
    "config_digest",
    "describe_keys",
    "load_config",
    "parse_md5",
    "pipeline_parameters",
    "compile_time_env",
    "config_slice",
    "restrict",
    "task_view",
    "preset_names",
    "resolve",
]
