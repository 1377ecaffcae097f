"""Latency of the embedding service under a bounded load, on loopback.

Starts ``simclr-pipeline serve`` on an export folder (a local run's ``--output-dir``), sends
``--requests`` v2 infer requests of ``--batch`` random uint8 images each from ``--concurrency``
threads, and reports p50 / p90 / p99 latency, throughput and errors. Everything stays on
127.0.0.1 and stops by itself.

    python benchmarks/serve_load.py --model outputs/demo [--requests 500] [--concurrency 8] [--batch 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import EmbeddingServer  # noqa: E402  (the tests' own loopback server wrapper)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="export folder (encoder.onnx, classifier.onnx, model.json)")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1, help="images per request")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    card = json.loads((Path(args.model) / "model.json").read_text())
    size = card["input"]["shape"][2]
    images = np.random.default_rng(0).integers(0, 256, (args.batch, 3, size, size), dtype=np.uint8)
    body = json.dumps(
        {
            "inputs": [
                {"name": "images", "datatype": "UINT8", "shape": list(images.shape), "data": images.ravel().tolist()}
            ]
        }
    ).encode()
    with EmbeddingServer(Path(args.model).resolve() / ".serve-bench", Path(args.model).resolve()) as server:
        url = server.url + "/v2/models/simclr-encoder/infer"

        def one(_: int) -> tuple[int, float]:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()
                    status = resp.status
            except urllib.error.HTTPError as err:
                status = err.code
            return status, time.perf_counter() - start

        for _ in range(10):  # warm-up, not counted
            one(0)
        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - wall
    latencies = [t * 1000 for s, t in results if s == 200]
    out = {
        "benchmark": "serve_load",
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (onnxruntime)",
        "date": time.strftime("%Y-%m-%d"),
        "model": {k: card["model"][k] for k in ("arch", "width", "feature_dim")} | {"input": card["input"]["shape"]},
        "requests": args.requests,
        "concurrency": args.concurrency,
        "images_per_request": args.batch,
        "errors": sum(1 for s, _ in results if s != 200),
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p90": _percentile(latencies, 90),
            "p99": _percentile(latencies, 99),
            "mean": statistics.fmean(latencies),
        },
        "requests_per_second": args.requests / wall,
        "images_per_second": args.requests * args.batch / wall,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
