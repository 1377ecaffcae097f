"""Issue 8's memory target: peak host memory of the data steps on CIFAR-10-sized input.

Builds a tarball in the exact CIFAR-10 python layout and size (five train
batches and a test batch of 10,000 random 32×32 images each, the real
``batches.meta``), then runs each data step — ``download_split`` (read,
validate, split, write three ``.npz``) and ``compute_stats`` — in a fresh
Python process, as the pipeline's container does, and records that process's
peak resident set. A process that only imports the step module
gives the interpreter's own share (Linux only: reads ``VmHWM``). Target: every data step ≤ 1.5 GB.

    .venv/bin/python benchmarks/data_memory_bench.py \
        --json benchmarks/results/data-memory-cpu-<date>.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kubeclr.atomic import write_json
from kubeclr.config import load_config
from kubeclr.data.cifar import META, ROOT, TEST_BATCH, TRAIN_BATCHES, dump_batch, dump_meta, pack_tarball

PER_BATCH = 10_000  # CIFAR-10: 5 × 10,000 train + 10,000 test images
TARGET_BYTES = 1.5e9  # issue 8: peak host memory of the data steps ≤ 1.5 GB
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Each child prints its peak RSS in KiB as its last line: VmHWM, the high-water mark of its
# own address space. (ru_maxrss would not do: Linux carries the forking parent's RSS over
# into the child's ru_maxrss across exec.)
_CHILD = """
import json, re, sys
from kubeclr.config import load_config
from kubeclr.steps import compute_stats, download_split
cfg = load_config("smoke", None, json.loads(sys.argv[1]))
out = sys.argv[2]
if sys.argv[3] == "download_split":
    download_split.run(cfg, f"{out}/train.npz", f"{out}/val.npz", f"{out}/test.npz")
elif sys.argv[3] == "compute_stats":
    compute_stats.run(cfg, f"{out}/train.npz", f"{out}/stats.json")
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def write_cifar_sized_tarball(path: Path, seed: int = 0) -> str:
    """Write a CIFAR-10-sized tarball of random images to ``path``; return its MD5."""
    rng = np.random.default_rng(seed)
    members = {f"{ROOT}/{META}": dump_meta(CLASS_NAMES, PER_BATCH)}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        labels = rng.permutation(np.arange(PER_BATCH) % len(CLASS_NAMES))
        images = rng.integers(0, 256, size=(PER_BATCH, 3, 32, 32), dtype=np.uint8)
        members[f"{ROOT}/{name}"] = dump_batch(images, labels.tolist(), batch_label=name)
    blob = pack_tarball(members, compresslevel=1)
    path.write_bytes(blob)
    return hashlib.md5(blob).hexdigest()


def peak_rss_mib(step: str, overrides: list[str], out: Path) -> float:
    """Run ``step`` in a fresh interpreter; return its peak RSS in MiB."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(overrides), str(out), step],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def run(work: Path) -> dict:
    tarball = work / "cifar-10-python.tar.gz"
    md5 = write_cifar_sized_tarball(tarball)
    overrides = [
        f"data.source={tarball}",
        f"data.md5={md5}",
        "data.train_limit=0",
        "data.val_limit=0",
        "data.test_limit=0",
        f"data.cache_dir={work / 'cache'}",
    ]
    steps = {step: peak_rss_mib(step, overrides, work) for step in ("import_only", "download_split", "compute_stats")}
    sizes = {name: (work / f"{name}.npz").stat().st_size for name in ("train", "val", "test")}
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": "cpu",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": {**load_config("smoke", None, overrides).to_dict()["data"], "source": "CIFAR-sized random tarball"},
        "tarball_bytes": tarball.stat().st_size,
        "images": 6 * PER_BATCH,
        "npz_bytes": sizes,
        "peak_rss_mib": steps,
        "target_mib": TARGET_BYTES / 2**20,
        "met": all(v * 2**20 <= TARGET_BYTES for v in steps.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--workdir", help="build the tarball and outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="data-memory-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rec = run(work)
    print(f"data steps on {rec['images']:,} CIFAR-sized images (tarball {rec['tarball_bytes'] / 2**20:.0f} MiB)")
    for step, mib in rec["peak_rss_mib"].items():
        print(f"  {step:<15} peak RSS {mib:8.1f} MiB")
    print(f"target ≤ {rec['target_mib']:.0f} MiB (1.5 GB): {'met' if rec['met'] else 'NOT met'}")
    if args.json:
        write_json(args.json, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
