"""How long the smoke demo must pretrain to end healthy: epochs x seeds through the real CLI.

Each run is ``simclr-pipeline run --local --preset smoke`` on the offline sample
data with ``pretrain.epochs`` and ``pretrain.seed`` overridden (t-SNE off: it
does not change the verdict and costs time). The record keeps, per run, the
health verdict, the kNN monitor at epoch 0 and at the end, the final loss, the
test top-1 of both probes and the seconds; per epoch count, how many seeds
ended healthy and the smallest margin of the monitor over its epoch-0 value.
The record is rewritten after every run, so an interrupted sweep keeps what
finished.

    .venv/bin/python benchmarks/smoke_demo_epochs.py --epochs 6 12 20 --seeds 0 1 2 \
        --json benchmarks/results/smoke-demo-epochs-cpu-<date>.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import torch

from kubeclr.atomic import write_json
from kubeclr.core.device import describe_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_run  # benchmarks/ is not a package: found by path, as quality_bench.py finds its helpers


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def run_demo(epochs: int, seed: int, out: Path) -> dict:
    """One smoke run; its verdict and numbers from the run's ``metrics.json``."""
    run = cli_run.run_local("smoke", [f"pretrain.epochs={epochs}", f"pretrain.seed={seed}", "eval.tsne_points=0"], out)
    m = run.metrics
    health = m["pretrain"]["health"]
    return {
        "epochs": epochs,
        "seed": seed,
        "health": health["status"],
        "knn_monitor_init": health.get("knn_top1_init"),
        "knn_monitor_final": health.get("knn_top1_final"),
        "final_loss": m["pretrain"]["final_loss"],
        "linear_test_top1": m["linear_eval"]["test_top1"],
        "knn_test_top1": m["knn"]["test_top1"],
        "pretrain_seconds": m["pretrain"]["seconds"],
        "wall_seconds": run.wall_seconds,
        "device": m["pretrain"]["device_name"],
    }


def summarise(runs: list[dict]) -> dict:
    """Per epoch count: seeds healthy out of seeds run, and the monitor's smallest margin over epoch 0."""
    out = {}
    for epochs in sorted({r["epochs"] for r in runs}):
        rs = [r for r in runs if r["epochs"] == epochs]
        margins = [
            r["knn_monitor_final"] - r["knn_monitor_init"]
            for r in rs
            if r["knn_monitor_final"] is not None and r["knn_monitor_init"] is not None
        ]
        out[str(epochs)] = {
            "healthy": sum(r["health"] == "healthy" for r in rs),
            "runs": len(rs),
            "min_knn_margin": min(margins) if margins else None,
            "pretrain_seconds_max": max(r["pretrain_seconds"] for r in rs),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, nargs="+", default=[6, 12, 20], help="epoch counts (default 6 12 20)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    ap.add_argument("--json", required=True, type=Path, help="where the record goes")
    ap.add_argument("--keep", type=Path, help="keep the runs' output folders here (default: a temporary folder)")
    args = ap.parse_args(argv)
    if any(e < 1 for e in args.epochs):
        ap.error("--epochs: each count must be at least 1")

    record = {
        "benchmark": "smoke-demo-epochs",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_device(torch.device("cpu")),
        "argv": sys.argv,
        "command": "simclr-pipeline run --local --preset smoke --set pretrain.epochs=E --set pretrain.seed=S "
        "--set eval.tsne_points=0 --output-dir OUT --run-name NAME",
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="smoke-demo-epochs-") as tmp:
        root = args.keep or Path(tmp)
        plan = [(e, s) for e in args.epochs for s in args.seeds]
        for i, (epochs, seed) in enumerate(plan, 1):
            print(f"[{i}/{len(plan)}] {epochs} epochs, seed {seed} …", flush=True)
            run = run_demo(epochs, seed, root / f"e{epochs}-s{seed}")
            monitor = f"{_fmt(run['knn_monitor_init'])} -> {_fmt(run['knn_monitor_final'])}"
            print(
                f"    {run['health']}: kNN monitor {monitor}, linear {run['linear_test_top1']:.3f}, "
                f"{run['pretrain_seconds']:.1f} s pretraining",
                flush=True,
            )
            record["runs"].append(run)
            record["summary"] = summarise(record["runs"])
            write_json(args.json, record)
    for epochs, s in record["summary"].items():
        margin = _fmt(s["min_knn_margin"], "+.3f")
        print(f"{epochs:>4} epochs: {s['healthy']}/{s['runs']} healthy, smallest kNN margin {margin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
