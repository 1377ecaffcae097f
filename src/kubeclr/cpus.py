"""The CPUs this process has: their model, and how many of them it may use.

Torch-free on purpose: the image decoders' spawned workers import the modules
that size their pools from :func:`usable_cpus`.
"""

from __future__ import annotations

import functools
import math
import os
import platform
from pathlib import Path

# (quota, period): cgroup v2 keeps both in cpu.max ("max 100000" = no limit), v1 in two files
CPU_QUOTA_FILES = (
    ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu.max"),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by the container's CPU limit (cgroup v2 or v1).

    A pod limited to 2 CPUs on a 64-core node gets 2, not 64: worker pools sized
    from it do not oversubscribe, and records made on it say what the run had.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    for quota_file, period_file in CPU_QUOTA_FILES:
        try:
            quota, period = Path(quota_file).read_text().split()[0], Path(period_file).read_text().split()[-1]
            if quota not in ("max", "-1"):
                return max(1, min(cpus, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError, IndexError):
            continue
    return cpus


@functools.cache
def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux x86), else what :mod:`platform` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
