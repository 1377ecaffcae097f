"""Device selection: the only place that looks at what hardware exists."""

from __future__ import annotations

import torch

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
