"""The CPUs this process has: their model, and how many of them it may use.

Torch-free on purpose: the image decoders' spawned workers import the modules
that size their pools from :func:`usable_cpus`; :func:`cap_torch_threads`
works on a torch that the caller has already loaded.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import platform
import sys
from pathlib import Path

log = logging.getLogger(__name__)

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
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return cpus


def cap_torch_threads() -> None:
    """Lower torch's CPU threads to :func:`usable_cpus` when its pool is larger; never raise it.

    Torch sizes its pool from the CPUs it sees, in a pod the node's; under a
    lower CPU limit the extra threads only queue for the CFS quota. Called where
    a step or a training process starts, after torch is loaded (it is not
    imported here: a process that has not loaded torch is left alone). An
    ``OMP_NUM_THREADS`` the user set wins (torchrun sets it to 1 for several
    processes a pod).
    """
    torch = sys.modules.get("torch")
    if torch is None or "OMP_NUM_THREADS" in os.environ:
        return
    cpus = usable_cpus()
    if torch.get_num_threads() > cpus:
        log.info("torch CPU threads %d -> %d: the CPUs this process may use", torch.get_num_threads(), cpus)
        torch.set_num_threads(cpus)


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
