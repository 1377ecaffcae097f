"""ResNet encoder and projection head of SimCLR.

Encoder: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
built from torchvision's ``BasicBlock``/``Bottleneck`` with a ``width`` knob
(base channels; 64 is the standard ResNet) so that tests and the smoke preset
can run narrow networks. ``stem='cifar'`` replaces the 7×7/2 convolution and
the max-pool by a 3×3/1 convolution, as in SimCLR App. B.9 (Chen et al. 2020,
arXiv:2002.05709); without it 32×32 inputs are down-sampled 4× before the first
block and linear accuracy drops to ~70%. ``stem='cifar_s2'`` is the same 3×3
convolution with stride 2, for 64–96 px images (STL-10): half the resolution of
the CIFAR stem from the first layer on, a quarter of its compute. Parameter names match torchvision's
ResNet, so ImageNet weights load directly. The classifier ``fc`` is removed.

Head: g(·) of SimCLR §2.1 — Linear → BN → ReLU → Linear (optionally → BN, the
seed article's head), or a single Linear layer.

Weights are read in one place, :func:`read_state_dict` (``torch.load`` with
``weights_only=True``: tensors and plain values, never arbitrary objects): the
trained encoder a step reads (:func:`load_encoder`), the ``model.init`` URI
(:func:`load_init_state`), linear evaluation's classifier and the checkpoints.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from kubeclr.config import ModelConfig
from kubeclr.errors import ConfigError, DataError, UserError

if TYPE_CHECKING:
    from kubeclr.core.checkpoint import Store

log = logging.getLogger(__name__)

# arch -> (block, blocks per stage, torchvision ImageNet weights)
ARCHS = {
    "resnet18": (tv_resnet.BasicBlock, (2, 2, 2, 2), tv_resnet.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tv_resnet.BasicBlock, (3, 4, 6, 3), tv_resnet.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tv_resnet.Bottleneck, (3, 4, 6, 3), tv_resnet.ResNet50_Weights.IMAGENET1K_V1),
}


class ResNetEncoder(nn.Module):
    """ResNet trunk up to global average pooling.

    Args:
        block: ``torchvision.models.resnet.BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages.
        width: channels of the first stage (64 = standard); stages use
            ``width × (1, 2, 4, 8)``.
        stem: ``'cifar'`` (3×3 conv, stride 1, no max-pool), ``'cifar_s2'`` (the same,
            stride 2) or ``'imagenet'`` (7×7 conv, stride 2, 3×3 max-pool).

    Attributes:
        feature_dim: size of the output representation h,
            ``8 × width × block.expansion``.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], width: int = 64, stem: str = "cifar") -> None:
        super().__init__()
        if stem in ("cifar", "cifar_s2"):
            stride = 2 if stem == "cifar_s2" else 1
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=stride, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ConfigError(f"model.stem={stem!r} is not allowed (one of cifar, cifar_s2, imagenet)")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = width
        self.layer1 = self._stage(block, width, layers[0], stride=1)
        self.layer2 = self._stage(block, width * 2, layers[1], stride=2)
        self.layer3 = self._stage(block, width * 4, layers[2], stride=2)
        self.layer4 = self._stage(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()  # classifier removed: the output is h
        self.feature_dim = width * 8 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out = planes * block.expansion
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        mods += [block(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H, W) cifar; (B, w, H/4, W/4) imagenet
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w·e, H/8, W/8)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, feature_dim)


class SimCLRModel(nn.Module):
    """Encoder f(·) followed by projection head g(·) (SimCLR §2.1).

    Attributes:
        encoder: maps images to representations h (used downstream).
        head: maps h to z, the space where NT-Xent is applied.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x ``(B, 3, H, W)``. Returns: h ``(B, feature_dim)``, z ``(B, proj_dim)``."""
        h = self.encoder(x)
        return h, self.head(h)


def build_encoder(cfg: ModelConfig) -> ResNetEncoder:
    """ResNet encoder for ``cfg.arch``/``cfg.width``/``cfg.stem``, randomly initialised."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch={cfg.arch!r} is not allowed (one of {', '.join(ARCHS)})")
    block, layers, _ = ARCHS[cfg.arch]
    return ResNetEncoder(block, layers, width=cfg.width, stem=cfg.stem)


def feature_dim(cfg: ModelConfig) -> int:
    """Size of the representation h that :func:`build_encoder` gives for ``cfg``, without building it."""
    block, _, _ = ARCHS[cfg.arch]
    return cfg.width * 8 * block.expansion


def build_head(cfg: ModelConfig, feature_dim: int) -> nn.Module:
    """Projection head g(·): ``(B, feature_dim) -> (B, cfg.proj_dim)``.

    ``mlp``: Linear(feature_dim, hidden) → BN → ReLU → Linear(hidden, proj_dim)
    [→ BN when ``proj_final_bn``], hidden = ``proj_hidden`` or ``feature_dim``.
    ``linear``: Linear(feature_dim, proj_dim).
    """
    if cfg.head == "linear":
        return nn.Linear(feature_dim, cfg.proj_dim)
    if cfg.head != "mlp":
        raise ConfigError(f"model.head={cfg.head!r} is not allowed (one of mlp, linear)")
    hidden = cfg.proj_hidden or feature_dim
    layers: list[nn.Module] = [
        nn.Linear(feature_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, cfg.proj_dim, bias=not cfg.proj_final_bn),
    ]
    if cfg.proj_final_bn:
        layers.append(nn.BatchNorm1d(cfg.proj_dim))
    return nn.Sequential(*layers)


def build_model(cfg: ModelConfig) -> SimCLRModel:
    """Encoder plus projection head, randomly initialised (see :func:`load_init_weights`)."""
    encoder = build_encoder(cfg)
    return SimCLRModel(encoder, build_head(cfg, encoder.feature_dim))


def _imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``arch`` (downloaded or from the hub cache)."""
    url = ARCHS[arch][2].url
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # network, hash or file errors all mean "not available here"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"model.init=imagenet: cannot fetch {arch} weights from {url} ({reason}); "
            "use model.init=random or a URI of a state dict"
        ) from None


def load_init_weights(encoder: nn.Module, cfg: ModelConfig, state_dict: Mapping[str, Tensor] | None = None) -> None:
    """Initialise ``encoder`` in place according to ``cfg.init``.

    Args:
        encoder: output of :func:`build_encoder` for the same ``cfg``.
        cfg: model section; ``init`` is ``'random'`` (no-op), ``'imagenet'``
            (torchvision weights; width 64 only; with the CIFAR stem the 7×7
            ``conv1`` is skipped) or a URI, whose state dict the caller loaded
            with ``torch.load(..., weights_only=True)`` and passes here.
        state_dict: the URI's state dict (an encoder's, or a full torchvision
            ResNet's: ``fc.*`` and a ``module.`` prefix are ignored).

    Raises:
        ConfigError: ImageNet init with ``width != 64``, or a URI without a state dict.
        UserError: ImageNet weights unreachable, or a state dict that does not
            fit the encoder (names the first offending key).
    """
    if cfg.init == "random":
        return
    if cfg.init == "imagenet":
        if cfg.width != 64:
            raise ConfigError(f"model.init=imagenet needs model.width=64 (got {cfg.width})")
        source = f"torchvision {cfg.arch} ImageNet weights"
        weights = _imagenet_state_dict(cfg.arch)
    else:
        if state_dict is None:
            raise ConfigError(f"model.init={cfg.init!r}: no state dict was loaded from that URI")
        source, weights = cfg.init, state_dict
    weights = {k.removeprefix("module."): v for k, v in weights.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith("fc.")}
    skip = set()
    own = encoder.state_dict()
    if cfg.init == "imagenet" and cfg.stem != "imagenet":
        skip.add("conv1.weight")  # 7×7 ImageNet stem does not fit the 3×3 CIFAR stem
        weights.pop("conv1.weight", None)
    missing = sorted(set(own) - set(weights) - skip)
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        what = f"missing key '{missing[0]}'" if missing else f"unexpected key '{unexpected[0]}'"
        raise UserError(f"model.init: {source} does not fit {cfg.arch} width {cfg.width} ({what})")
    for key, value in weights.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise UserError(
                f"model.init: {source} does not fit {cfg.arch} width {cfg.width} "
                f"(key '{key}' has shape {tuple(value.shape)}, expected {tuple(own[key].shape)})"
            )
    encoder.load_state_dict(weights, strict=False)
    log.info("initialised %s encoder from %s%s", cfg.arch, source, " (conv1 kept random)" if skip else "")


# -- reading weights -----------------------------------------------------------------------------


def read_state_dict(source: str | Path | bytes, what: str, error: type[Exception] = UserError) -> dict[str, Any]:
    """A state dict read onto the CPU with ``torch.load(weights_only=True)``, every failure one ``error``.

    Args:
        source: a file path, or the file's bytes.
        what: names the source in the message (``encoder /out/encoder.pt``, ``model.init=s3://…``).
        error: what to raise: :class:`~kubeclr.errors.DataError` for a step's input file,
            :class:`~kubeclr.errors.UserError` for a URI in the config.

    Raises:
        error: not loadable without unpickling arbitrary objects (or not readable), or not a dict.
    """
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a missing or truncated file, a foreign pickle: one line naming the source
        raise error(f"{what}: not a weights-only torch state dict ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise error(f"{what}: expected a state dict, got {type(state).__name__}")
    return state


def load_encoder(cfg: ModelConfig, path: str | Path) -> ResNetEncoder:
    """The encoder of ``cfg`` with the trained weights in ``path`` (the pretrain step's ``encoder.pt``).

    Raises:
        DataError: unreadable file, or weights that do not fit ``cfg``.
    """
    encoder = build_encoder(cfg)
    state = read_state_dict(path, f"encoder {path}", DataError)
    try:
        encoder.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"encoder {path}: does not match model.arch={cfg.arch} width={cfg.width} stem={cfg.stem} ({first})"
        ) from None
    return encoder


def load_init_state(init: str, locate: Callable[[str], tuple[Store, str]]) -> dict[str, Any] | None:
    """The state dict named by ``model.init`` when it is a URI, for :func:`load_init_weights`; else ``None``.

    Args:
        init: ``model.init`` (``random``, ``imagenet`` or a URI).
        locate: a URI to its store and key (``kubeclr.storage.store.parent_and_key``): the core
            reads storage only through the :class:`~kubeclr.core.checkpoint.Store` interface.

    Raises:
        UserError: the object cannot be read weights-only or is not a state dict.
    """
    if init in ("random", "imagenet"):
        return None
    store, key = locate(init)
    return read_state_dict(store.read_bytes(key), f"model.init={init}", UserError)
