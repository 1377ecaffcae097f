"""One whole run through the real CLI, as a user starts it: for the benchmarks that measure runs, not parts."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Run:
    metrics: dict  # the run's metrics.json
    command: list[str]
    wall_seconds: float


def run_local(preset: str, sets: list[str], out: Path) -> Run:
    """``simclr-pipeline run --local --preset PRESET --set …`` into ``out`` (a rerun replaces it).

    Exits with the command and the tail of its output when the run fails, so a
    sweep stops at its first broken run and its record keeps what finished.
    """
    cli = Path(sys.executable).with_name("simclr-pipeline")
    cmd = [str(cli), "run", "--local", "--preset", preset, "--output-dir", str(out), "--run-name", out.name]
    cmd += [a for kv in sets for a in ("--set", kv)]
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return Run(json.loads((out / "metrics.json").read_text()), cmd, wall)
