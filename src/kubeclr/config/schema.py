"""The configuration schema: one frozen dataclass per section, each field with its rule.

A config is a preset (``configs/<name>.yaml``, shipped in the wheel as
``kubeclr.presets``) or a user YAML file, plus ``--set section.key=value``
overrides (:mod:`kubeclr.config.load`). Values are parsed by the field's declared
type; unknown keys, wrong types and out-of-range values raise
:class:`~kubeclr.errors.ConfigError` with one line naming the key and what is
allowed (:mod:`kubeclr.config.parse`). ``docs/config.md`` is generated from
these classes (``python -m kubeclr.config.docs``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from kubeclr.config.data import DataConfig, data_defaults, stored_size
from kubeclr.config.parse import build_section, option, parse_assignments
from kubeclr.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    arch: str = option("resnet18", choices=("resnet18", "resnet34", "resnet50"))
    width: int = option(64, ge=4, help="base channels of the first stage (64 = standard ResNet)")
    stem: str = option(
        "cifar",
        choices=("cifar", "cifar_s2", "imagenet"),
        help="'cifar': 3x3/1 conv, no max-pool (32 px); 'cifar_s2': the same with stride 2 (64-96 px, e.g. STL-10); "
        "'imagenet': 7x7/2 conv + max-pool",
    )
    init: str = option("random", help="'random', 'imagenet', or a URI of a state dict")
    head: str = option("mlp", choices=("mlp", "linear"))
    proj_hidden: int = option(0, ge=0, help="hidden width of the MLP head (0 = encoder feature dim)")
    proj_dim: int = option(128, ge=1)
    proj_final_bn: bool = option(False, help="BatchNorm after the last head layer (the seed article's head)")
    sync_bn: bool = option(False, help="SyncBatchNorm under DDP")


@dataclass(frozen=True)
class AugmentConfig:
    size: int = option(0, ge=0, help="output crop size (0 = data.image_size, the stored size; else at least 8)")
    crop_scale: tuple[float, float] = option((0.08, 1.0), help="area range of the random resized crop, in (0, 1]")
    flip_p: float = option(0.5, ge=0, le=1)
    color_strength: float = option(0.5, ge=0, help="colour distortion strength s")
    color_p: float = option(0.8, ge=0, le=1)
    grayscale_p: float = option(0.2, ge=0, le=1)
    blur: bool = option(False, help="Gaussian blur (off for CIFAR, as in the paper)")


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = option(100, ge=1)
    batch_size: int = option(512, ge=2, help="global batch size (all ranks together)")
    optimizer: str = option("lars", choices=("lars", "sgd", "adamw"))
    lr: float = option(0.3, gt=0, help="base learning rate: the rate at batch 256 under lr_scaling linear or sqrt")
    lr_scaling: str = option(
        "linear",
        choices=("linear", "sqrt", "none"),
        help="peak lr = lr x B/256 (linear), lr x sqrt(B/256) (sqrt; SimCLR App. B.1's "
        "0.075 x sqrt(B) is lr=1.2), or lr (none); B = global batch",
    )
    weight_decay: float = option(1e-6, ge=0)
    momentum: float = option(0.9, ge=0, le=1)
    trust_coefficient: float = option(0.001, gt=0, help="LARS eta")
    warmup_epochs: float = option(10.0, ge=0, help="linear warm-up length in epochs (fractions allowed)")
    warmup_steps: int = option(0, ge=0, help="linear warm-up length in optimizer steps; > 0 replaces warmup_epochs")
    temperature: float = option(0.5, gt=0)
    precision: str = option(
        "bf16",
        choices=("fp32", "bf16", "fp16"),
        help="autocast dtype of the model (the loss stays fp32): bf16 on GPU and CPU, fp16 on GPU only "
        "(refused on CPU, which has no fp16 kernels), fp32 = no autocast",
    )
    compile: bool = option(
        False,
        help="torch.compile the model and the augmentation (static shapes); eager, with one warning, "
        "where the image cannot compile",
    )
    compile_cache: bool = option(
        True,
        help="with compile and a checkpoint_uri: save the compiled kernels next to the checkpoints and load "
        "them in a retried or resumed task. The cache is code (pickled, then run): leave this on only "
        "where nobody but the pipeline can write the checkpoint prefix",
    )
    channels_last: bool = option(
        True, help="NHWC memory format on GPU; ignored on CPU, where oneDNN's NHWC convolutions crash for some models"
    )
    checkpoint_every: int = option(10, ge=0, help="epochs between checkpoints (0 = only at the end)")
    knn_every: int = option(
        0,
        ge=0,
        help="kNN monitor every N epochs and once before the first step, the run's own baseline (0 = off): "
        "up to 1,000 train images, held out of the labelled bank, queried against up to 10,000 others",
    )
    seed: int = option(0, ge=0)
    device: str = option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class EvalConfig:
    protocol: str = option(
        "features",
        choices=("features", "crops"),
        help="'features': logistic regression on features computed once; 'crops': a linear "
        "layer trained by SGD on random-resized crops through the frozen encoder "
        "(the seed article's protocol, MoCo main_lincls.py)",
    )
    knn_k: int = option(200, ge=1)
    knn_temperature: float = option(0.1, gt=0)
    tsne_points: int = option(1000, ge=0)
    batch_size: int = option(512, ge=1, help="batch size of feature extraction")
    l2_grid: tuple[float, ...] = option(
        (1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
        help="L2 strengths tried on val; a best on the grid's edge extends it 10x past that edge "
        "(at most 4 steps, within 1e-9..10) until the best is inside",
    )
    max_iter: int = option(500, ge=1, help="L-BFGS iterations of the logistic regression")
    crops_epochs: int = option(
        100,
        ge=1,
        help="epochs of the 'crops' protocol's linear layer (100 as in MoCo's main_lincls.py)",
    )
    crops_lr: float = option(0.1, gt=0, help="learning rate of the 'crops' protocol")
    finetune: bool = option(False, help="'crops' protocol: unfreeze the encoder")


@dataclass(frozen=True)
class MetricsConfig:
    pushgateway_url: str = option("", help="Prometheus Pushgateway URL ('' = off)")
    port: int = option(0, ge=0, le=65535, help="serve /metrics on this port while a step runs (0 = off)")
    addr: str = option("0.0.0.0", help="address the /metrics endpoint binds to (tests use 127.0.0.1)")
    job: str = option("simclr", help="Pushgateway job name")


@dataclass(frozen=True)
class StorageConfig:
    checkpoint_uri: str = option("", help="file:// or s3:// prefix for pretraining checkpoints ('' = none)")
    mirror_uri: str = option("", help="s3:// prefix caching the dataset tarball ('' = off)")
    export_uri: str = option("", help="copy encoder, report and metrics.json here, by run name ('' = off)")
    history_uri: str = option(
        "", help="file:// or s3:// prefix of the run history: one record per run, compared by the gate ('' = off)"
    )


@dataclass(frozen=True)
class ClusterConfig:
    engine: str = option(
        "trainjob",
        choices=("trainjob", "pytorchjob"),
        help="multi-node engine (nodes > 1): a Kubeflow Trainer v2 TrainJob, or a Training Operator v1 PyTorchJob",
    )
    runtime_name: str = option("torch-distributed", help="the TrainJob's runtime (runtimeRef.name)")
    runtime_kind: str = option(
        "ClusterTrainingRuntime",
        choices=("ClusterTrainingRuntime", "TrainingRuntime"),
        help="the runtime's kind: cluster-wide, or a TrainingRuntime in the run's namespace",
    )


@dataclass(frozen=True)
class GateConfig:
    action: str = option(
        "warn",
        choices=("warn", "fail"),
        help="a failed comparison, or a run whose kNN monitor ends not above its epoch 0 (below-random-init), "
        "warns or fails the run",
    )
    min_runs: int = option(3, ge=1, help="earlier runs of the series needed before the gate is armed")
    max_drop_linear_top1: float = option(
        0.02, ge=0, help="allowed drop of linear test top-1 below the median (absolute)"
    )
    max_drop_knn_top1: float = option(0.02, ge=0, help="allowed drop of kNN test top-1 below the median (absolute)")
    max_drop_throughput: float = option(
        0.15, ge=0, le=1, help="allowed drop of pretraining images/s below the median (relative)"
    )
    max_drop_rankme: float = option(
        0.25, ge=0, le=1, help="allowed drop of the test features' effective rank (RankMe) below the median (relative)"
    )
    expected_interval_s: int = option(
        86400, ge=60, help="how often the series runs (its schedule): the dead-canary alert fires after 2x this"
    )


@dataclass(frozen=True)
class ReportConfig:
    history_runs: int = option(20, ge=1, help="earlier runs of the series read from storage.history_uri")
    series: str = option(
        "", help="name of the series this run belongs to ('' = derived from the keys that make runs comparable)"
    )


@dataclass(frozen=True)
class DeployConfig:
    """The deploy step of ``compile --deploy``: the new model as a KServe InferenceService."""

    name: str = option("simclr-encoder", help="InferenceService the deploy step creates or patches")
    namespace: str = option("", help="its namespace ('' = the pipeline pod's own)")
    image: str = option("", help="the predictor's image ('' = the pipeline's image, tag + '-serve')")
    min_test_top1: float = option(
        0.0, ge=0, le=1, help="deploy only at this linear test top-1 or above (0 = any); a failed gate never deploys"
    )
    gpus: int = option(0, ge=0, le=8, help="GPUs of the predictor (0 = CPU only)")


@dataclass(frozen=True)
class RegistryConfig:
    """The Kubeflow Model Registry the export is registered with (off unless ``url`` is set)."""

    url: str = option(
        "", help="Model Registry REST endpoint, e.g. http://model-registry-service.kubeflow:8080 ('' = off)"
    )
    model_name: str = option("simclr-encoder", help="registered model name; each run adds a version named after it")
    author: str = option("kubeclr", help="author recorded with each version")


class NotGivenError(RuntimeError):
    """A step read a config key its task was not given: the task's ``READS`` (its step module) is incomplete.

    A bug in kubeclr, never bad input: the key would otherwise have silently taken its default.
    """


class PartialSection:
    """The keys of one section that a task was given; reading any other key raises :class:`NotGivenError`.

    A task of the pipeline receives only the config keys its step reads (so its KFP cache key follows
    exactly those): the sections it reads whole are the plain dataclasses, the others are this.
    """

    def __init__(self, name: str, values: Any, keys: frozenset[str]):
        self._name, self._values, self._keys = name, values, keys

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):  # copy/pickle probes, and our own fields before __init__
            raise AttributeError(key)
        if key in self._keys:
            return getattr(self._values, key)
        raise NotGivenError(
            f"config key '{self._name}.{key}' was not given to this task: add it to the step's READS "
            "(kubeclr.steps.<step>.READS) so that it reaches the task and is part of its cache key"
        )

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self._values).items() if k in self._keys} if self._keys else {}


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run: one frozen section per concern.

    Leaf functions (augmentation, model, optimiser, probes) receive only their own section
    (``cfg.pretrain``); the training loop and the steps, which combine sections, get the whole config.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, *, origin: str = "config", partial: bool = False) -> Config:
        """Build and validate a config from nested mappings (YAML or JSON).

        Args:
            raw: ``{section: {key: value}}``; a missing section or key takes its default.
            origin: names the source in error messages.
            partial: a task's view: only the keys in ``raw`` exist, and reading any other raises
                :class:`NotGivenError` instead of returning a default (:class:`PartialSection`).
        """
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"{origin}: unknown section '{unknown[0]}' (allowed: {', '.join(sections)})")
        built: dict[str, Any] = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            values = build_section(section_cls, name, raw.get(name) or {}, origin)
            keys = {k.name for k in dataclasses.fields(section_cls)}
            given = frozenset(raw.get(name) or {})
            if name == "data" and (not partial or given == keys):
                values = data_defaults(values, origin)
            built[name] = values if not partial or given == keys else PartialSection(name, values, given)
        if not partial and built["data"].stream and built["eval"].protocol == "crops":
            raise ConfigError(
                f"{origin}: eval.protocol=crops trains on the decoded images, which data.stream=true does not "
                "keep; use eval.protocol=features"
            )
        return cls(**built)

    @property
    def is_view(self) -> bool:
        """Whether this is a task's view (:meth:`from_dict` with ``partial``): some keys were not given."""
        return any(isinstance(getattr(self, f.name), PartialSection) for f in dataclasses.fields(self))

    @property
    def crop_size(self) -> int:
        """Side of the augmented views: ``augment.size``, or the stored images' size when that is 0."""
        return self.augment.size or stored_size(self.data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples become lists) for YAML/JSON and KFP parameters; a view gives its keys only."""
        out = {}
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            values = section.given() if isinstance(section, PartialSection) else dataclasses.asdict(section)
            if values or not isinstance(section, PartialSection):
                out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        return out

    def override(self, assignments: Mapping[str, Any] | Sequence[str], origin: str = "--set") -> Config:
        """Return a copy with ``section.key`` values replaced.

        Args:
            assignments: ``["pretrain.epochs=5", …]`` (strings parsed by the
                field's type) or ``{"pretrain.epochs": 5}`` (typed values).
            origin: where the values came from, for error messages (a flag name).
        """
        pairs = parse_assignments(assignments) if not isinstance(assignments, Mapping) else dict(assignments)
        raw = self.to_dict()
        for dotted, value in pairs.items():
            section, _, key = dotted.partition(".")
            if section not in raw or not key:
                raise ConfigError(f"{origin} {dotted}: expected section.key with section one of {', '.join(raw)}")
            if key not in raw[section]:
                allowed = ", ".join(raw[section])
                raise ConfigError(f"{origin} {dotted}: unknown key '{key}' in section '{section}' (allowed: {allowed})")
            raw[section][key] = value
        return Config.from_dict(raw, origin=origin, partial=self.is_view)

    def dotted_keys(self) -> list[str]:
        """Every ``section.key`` of the config, in declaration order."""
        return [f"{s}.{k}" for s, keys in self.to_dict().items() for k in keys]
