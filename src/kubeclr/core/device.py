"""Device selection: the only place that looks at what hardware exists."""

from __future__ import annotations

import torch
from torch import nn

from kubeclr.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Map a config value ('auto', 'cpu', 'cuda', 'cuda:N') to a torch device.

    Raises:
        ConfigError: CUDA asked for but not available, or an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not valid (allowed: auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA GPU is available")
    return device


def describe_device(device: torch.device) -> str:
    """Human-readable device name for reports and benchmarks."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def channels_last_ok(model: nn.Module, device: torch.device) -> bool:
    """Whether ``model`` may run in channels_last (NHWC) memory format on ``device``.

    Always on CUDA. On CPU only when every 1×1 convolution has input and output
    channel counts that are multiples of 8: torch 2.14.1's oneDNN AVX2 1×1
    backward-weights kernel writes out of bounds for NHWC convolutions with fewer
    channels (a segfault, an abort or a hang at ``model.width`` 4 or 6).
    Wider models gain ~30% (training) to ~50% (inference) on CPU from NHWC.
    """
    if device.type == "cuda":
        return True
    return all(
        conv.in_channels % 8 == 0 and conv.out_channels % 8 == 0
        for conv in model.modules()
        if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    )


def memory_format(model: nn.Module, device: torch.device, wanted: bool = True) -> torch.memory_format:
    """channels_last when ``wanted`` and :func:`channels_last_ok`, else contiguous (NCHW)."""
    return torch.channels_last if wanted and channels_last_ok(model, device) else torch.contiguous_format


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for ``pretrain.precision`` (``bf16`` / ``fp16``) on CUDA; fp32 everywhere else."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda" and precision != "fp32")
