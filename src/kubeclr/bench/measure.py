"""How the benchmarks measure: their settings, a timed loop that syncs the device, memory, inputs."""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from kubeclr.cpus import usable_cpus
from kubeclr.errors import ConfigError


@dataclass(frozen=True)
class BenchSettings:
    """Benchmark knobs (not part of the training config).

    Each can be set from the environment as ``KUBECLR_BENCH_<NAME>`` (e.g.
    ``KUBECLR_BENCH_REPEATS=5``), see :meth:`from_env`.

    Attributes:
        warmup: untimed iterations before timing (``step``: one warm-up epoch if > 0).
        repeats: timed repeats; the median is reported.
        steps: iterations per repeat (and steps per epoch of ``step`` unless ``images`` is set).
        workers: DataLoader workers of the seed baseline (-1 = min(4, CPU count)).
        images: synthetic training-set size for ``step`` (0 = steps × batch size).
        threads: torch intra-op threads (0 = leave torch's default).
        seed: seed of the synthetic data and the samplers.
    """

    warmup: int = 1
    repeats: int = 3
    steps: int = 2
    workers: int = -1
    images: int = 0
    threads: int = 0
    seed: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: int) -> BenchSettings:
        """Defaults, then ``KUBECLR_BENCH_*`` variables, then ``overrides``.

        Raises:
            ConfigError: a variable that is not an integer, or a value out of range.
        """
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"KUBECLR_BENCH_{f.name.upper()}")
            if raw is not None:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"KUBECLR_BENCH_{f.name.upper()}={raw!r} is not an integer") from None
        values.update(overrides)
        settings = cls(**values)
        for name in ("repeats", "steps"):
            if getattr(settings, name) < 1:
                raise ConfigError(f"bench setting {name}={getattr(settings, name)} must be >= 1")
        if settings.warmup < 0 or settings.images < 0 or settings.threads < 0:
            raise ConfigError("bench settings warmup, images and threads must be >= 0")
        return settings

    def loader_workers(self) -> int:
        return min(4, usable_cpus()) if self.workers < 0 else self.workers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    call: Callable[[], Any], images_per_call: int, *, warmup: int, repeats: int, calls: int, device: torch.device
) -> list[float]:
    """Images/s of ``repeats`` timed blocks of ``calls`` calls, after ``warmup`` untimed calls.

    The device is synchronised before each clock read, so queued GPU work is counted.

    Returns:
        One rate per repeat (use the median).
    """
    for _ in range(warmup):
        call()
    sync(device)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        sync(device)
        rates.append(calls * images_per_call / (time.perf_counter() - t0))
    return rates


def synthetic_images(n: int, size: int, device: torch.device, seed: int) -> torch.Tensor:
    """uint8 ``(n, 3, size, size)`` noise images generated on ``device`` (no host copy for GPU runs)."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, device=device, dtype=torch.uint8)


def peak_host_memory_mb() -> dict[str, float]:
    """Peak resident set size of this process and of its (finished) children, MiB (ru_maxrss is KiB on Linux)."""
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
