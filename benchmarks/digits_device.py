"""The smoke recipe on real digits, on one device and precision: does the GPU path learn what the CPU path learns?

Issue 27's last GPU check: the digits quality benchmark's recipe (the
``smoke`` preset at width 32, batch 128, 30 epochs; ``benchmarks/quality_bench.py``)
trained by :func:`kubeclr.core.train.train_simclr` on the digits' train split,
scored by the quality benchmark's independent probe (scikit-learn logistic
regression, C chosen on val; weighted cosine kNN). Run it once on the GPU with
bf16 and compile, once on the CPU in fp32, and compare the means::

    python benchmarks/digits_device.py --device cuda --precision bf16 --compile --seeds 0 1 \\
        --json benchmarks/results/digits-device-<gpu>-<date>.json
    python benchmarks/digits_device.py --device cpu --precision fp32 --seeds 0 1 \\
        --json benchmarks/results/digits-device-cpu-<date>.json

No kfp, no object storage: only the training loop and the probe, so it runs
on a bare GPU machine with torch, torchvision and scikit-learn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_bench

from kubeclr.config import load_config
from kubeclr.core import train
from kubeclr.core.device import describe_device, resolve_device


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    splits = quality_bench.digit_splits(args.data_seed)
    mean, std = quality_bench.train_stats(splits)
    runs = []
    for seed in args.seeds:
        cfg = load_config(
            "smoke",
            None,
            {
                "model.width": args.width,
                "pretrain.epochs": args.epochs,
                "pretrain.batch_size": args.batch_size,
                "pretrain.precision": args.precision,
                "pretrain.compile": args.compile,
                "pretrain.seed": seed,
                "pretrain.checkpoint_every": 0,
                "pretrain.knn_every": 0,
            },
        )
        t0 = time.perf_counter()
        result = train.train_simclr(cfg, splits["train"][0], mean, std, device=device)
        seconds = time.perf_counter() - t0
        scores = quality_bench.probe(result.model.encoder.eval(), splits, mean, std)
        runs.append({"seed": seed, "seconds": seconds, "final_loss": result.summary["final_loss"], **scores})
        print(json.dumps(runs[-1]), flush=True)
    summary = {
        k: {"mean": statistics.mean(r[k] for r in runs), "std": statistics.pstdev(r[k] for r in runs)}
        for k in ("probe_linear_top1", "probe_knn_top1")
    }
    return {
        "date": dt.date.today().isoformat(),
        "device": device.type,
        "device_name": describe_device(device),
        "torch": torch.__version__,
        "precision": args.precision,
        "compile": args.compile,
        "recipe": {"preset": "smoke", "width": args.width, "epochs": args.epochs, "batch_size": args.batch_size},
        "command": " ".join(sys.argv),
        "runs": runs,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model and the augmentation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", type=Path, required=True, help="where the record goes")
    args = p.parse_args(argv)
    record = run(args)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
