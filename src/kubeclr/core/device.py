"""Device selection: the only place that looks at what hardware exists."""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Mapping

import torch

from kubeclr.cpus import cpu_model, usable_cpus
from kubeclr.errors import ConfigError

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def driver_version() -> str | None:
    """The NVIDIA driver's version as the kernel module reports it (``nvidia-smi`` as a fallback), else None."""
    version = Path("/proc/driver/nvidia/version")
    if version.is_file():
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", version.read_text())
        if found:
            return found.group(1)
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split("\n")[0].strip() or None


def cuda_report(env: Mapping[str, str] | None = None) -> str:
    """One line on what CUDA sees here: the torch build, the driver, the visible GPUs.

    The CUDA 13 builds of torch need an NVIDIA driver >= 580 and a GPU of
    compute capability 7.5 or newer; the line says what was found instead.
    """
    env = os.environ if env is None else env
    driver = driver_version() or "none found (no /proc/driver/nvidia/version, no nvidia-smi)"
    visible = ", ".join(f"{k}={env[k]}" for k in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES") if k in env)
    gpus = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else "none usable"
    )
    return (
        f"torch {torch.__version__} built for CUDA {torch.version.cuda or 'none (CPU build)'}; driver {driver}; "
        f"GPUs: {gpus}{f'; {visible}' if visible else ''}"
    )


def require_given_gpus(gpus: int, device: str, env: Mapping[str, str] | None = None) -> None:
    """A pod that was given GPUs must train on them, not silently on its CPU for days.

    On a cluster (``KUBERNETES_SERVICE_HOST`` set, as in every pod) with ``gpus`` >= 1 and
    ``pretrain.device`` auto or cuda, CUDA must work. Local runs and ``device: cpu`` are left alone.

    Raises:
        ConfigError: one line naming what was found (see :func:`cuda_report`).
    """
    env = os.environ if env is None else env
    if gpus < 1 or device == "cpu" or "KUBERNETES_SERVICE_HOST" not in env or torch.cuda.is_available():
        return
    raise ConfigError(
        f"this step was given {gpus} GPU(s) but CUDA is unusable: {cuda_report(env)}; the CUDA 13 build needs an "
        "NVIDIA driver >= 580 and a GPU of compute capability >= 7.5 (or set pretrain.device=cpu to train on CPU)"
    )


def describe_device(device: torch.device) -> str:
    """Human-readable device name for reports and benchmarks: the GPU's model, or the CPU's model and cores.

    A CPU result is only comparable with one from the same CPU model (floats and
    speed both differ between, say, Intel and AMD), so CPU records name it.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()} ({usable_cpus()} cores)"


def memory_format(device: torch.device, wanted: bool = True) -> torch.memory_format:
    """The memory format of models and images on ``device``: channels_last (NHWC) when ``wanted`` on CUDA only.

    Every conversion to channels_last (pretraining, feature extraction, the
    benchmarks) asks here. CPU always gets contiguous (NCHW) tensors: torch
    2.14.1's oneDNN NHWC convolutions crash on CPU for narrow models (ResNet-18
    width 8 segfaults in its first training step at 64 px, but not at 32 px), and
    no rule over channel counts was found to hold. NHWC was 30-50% faster on CPU
    where it worked; a slower run beats a segfault.
    """
    if wanted and device.type != "cuda":
        _say_no_channels_last_on_cpu()
        return torch.contiguous_format
    return torch.channels_last if wanted else torch.contiguous_format


@functools.cache
def _say_no_channels_last_on_cpu() -> None:
    log.info("channels_last is not used on CPU (oneDNN's NHWC convolutions crash for some models): NCHW instead")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for ``pretrain.precision``: bf16 on CPU and CUDA, fp16 on CUDA, fp32 off.

    Raises:
        ConfigError: fp16 on CPU, which has no float16 kernels: autocast runs but is
            ~13x slower than fp32 (ResNet-18 width 8, 32 px) and has no loss scaling.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("pretrain.precision=fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
    if precision not in AUTOCAST_DTYPES:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
