"""Peak memory and speed of image folder ingestion: 60,000 images of 32 px, decoded by the data step's code.

Writes an image folder (50,000 train + 10,000 test PNG/JPEG/WebP files from the
synthetic sample classes), then reads it with
:func:`kubeclr.data.formats.read_image_folder` in a child process while a
sampler adds up the resident memory (RSS) of that process and every decoding
worker it starts, every 20 ms. The result is the peak of that sum — the memory
the data step's pod needs — next to the size of the decoded uint8 arrays.

    python benchmarks/ingest_memory.py [--images 60000] [--size 32] [--workers 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from kubeclr.cpus import cpu_model, usable_cpus

GB = 1e9


def _tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def write_folder(root: Path, n: int) -> dict[str, int]:
    import numpy as np
    from PIL import Image

    from kubeclr.data.sample import CLASS_NAMES, render

    per_class_test = n // 6 // len(CLASS_NAMES)
    per_class_train = (n - per_class_test * len(CLASS_NAMES)) // len(CLASS_NAMES)
    kinds = (("png", "PNG", {}), ("jpg", "JPEG", {"quality": 90}), ("webp", "WEBP", {"quality": 90}))
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        rng = np.random.default_rng(len(split))
        labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
        for start in range(0, len(labels), 5000):
            images = render(labels[start : start + 5000], rng)
            for i, (image, label) in enumerate(zip(images, labels[start : start + 5000]), start):
                ext, fmt, options = kinds[i % 3]
                folder = root / split / CLASS_NAMES[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:06d}.{ext}", fmt, **options)
    return {"train": per_class_train * len(CLASS_NAMES), "test": per_class_test * len(CLASS_NAMES)}


def _ingest(root: str, size: int, workers: int, out: multiprocessing.Queue) -> None:
    from kubeclr.config import Config
    from kubeclr.data.formats import read_image_folder

    values = {"data.format": "imagefolder", "data.source": root, "data.image_size": size, "data.workers": workers}
    d = Config().override(values).data
    start = time.perf_counter()
    splits = read_image_folder(d, Path(root), root)
    seconds = time.perf_counter() - start
    arrays = sum(b.images.nbytes for b in (splits.train, splits.val, splits.test)) + splits.unlabeled.nbytes
    out.put({"seconds": seconds, "array_bytes": arrays, "images": len(splits.manifest)})


def measure(root: str, size: int, workers: int) -> dict:
    """Ingest ``root`` in a fresh process; its result and the peak RSS of it and its workers."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_ingest, args=(root, size, workers, queue))
    peak, done = 0, threading.Event()
    proc.start()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    while True:  # a child that dies (an error in ingestion) ends the benchmark instead of hanging it
        try:
            result = queue.get(timeout=1)
            break
        except Exception:  # queue.Empty
            if not proc.is_alive():
                done.set()
                raise SystemExit(f"ingestion failed (exit code {proc.exitcode}); see its traceback above") from None
    proc.join()
    done.set()
    sampler.join()
    return {
        "workers": workers or usable_cpus(),
        "seconds": round(result["seconds"], 1),
        "images_per_second": round(result["images"] / result["seconds"], 1),
        "decoded_array_gb": round(result["array_bytes"] / GB, 3),
        "peak_rss_gb_process_and_workers": round(peak / GB, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument(
        "--workers",
        default="0,1",
        help="comma-separated variants: decoding processes (0 = one per usable CPU, 1 = inline)",
    )
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kubeclr-ingest-") as tmp:
        start = time.perf_counter()
        counts = write_folder(Path(tmp), args.images)
        print(f"wrote {sum(counts.values())} files in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        variants = [measure(tmp, args.size, int(w)) for w in args.workers.split(",")]
    record = {
        "benchmark": "image folder ingestion: peak memory (the data step's process + its decoding workers) and speed",
        "command": "python benchmarks/ingest_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "files": counts,
        "image_size": args.size,
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "machine": cpu_model(),
        "variants": variants,
        "limit_gb": 1.5,
        "within_limit": all(v["peak_rss_gb_process_and_workers"] <= 1.5 for v in variants),
    }
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if record["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
