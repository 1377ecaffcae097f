"""Issue 4's benchmark: linear evaluation, 'features' protocol vs the seed article's 'crops' protocol.

Both protocols evaluate the *same* encoder on the *same* splits, in one run,
through the pipeline's own step functions:

1. ``download_split`` + ``compute_stats`` (the preset's data; ``smoke`` is the
   offline synthetic ``sample`` source);
2. the encoder: ``--encoder PATH`` (a state dict from a pretraining run), or a
   fresh ``pretrain`` step with the preset;
3. ``features``: ``extract_features`` then ``linear_eval`` (L-BFGS logistic
   regression on frozen features); its wall time is counted with and without
   the extraction;
4. ``seed`` (the 'crops' protocol, once named 'seed'; the record keeps the key): ``linear_eval``
   with ``eval.protocol=crops`` (a linear layer trained
   with SGD on random-resized crops through the frozen encoder).

Writes a JSON record (device, date, config, seconds and accuracies of each,
speed-up) and prints a table. Target (issue 4): ``features`` at least 50×
faster at no worse accuracy.

    .venv/bin/python benchmarks/linear_eval_bench.py --preset smoke \
        --set pretrain.device=cpu --json benchmarks/results/linear-eval-cpu-<date>.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from kubeclr.atomic import write_json
from kubeclr.config import load_config
from kubeclr.core.device import describe_device, resolve_device
from kubeclr.errors import UserError
from kubeclr.steps import compute_stats, download_split, extract_features, linear_eval
from kubeclr.steps import pretrain as pretrain_step

KEYS = ("val_top1", "test_top1", "test_top5")


def run(cfg, work: Path, encoder: str | None) -> dict:
    """Prepare data and encoder in ``work``, run both protocols, return the record."""
    p = {name: work / f"{name}.npz" for name in ("train", "val", "test", "features")}
    stats, results, classifier = work / "stats.json", work / "results.json", work / "classifier.pt"
    download_split.run(cfg, p["train"], p["val"], p["test"])
    compute_stats.run(cfg, p["train"], stats)
    if encoder is None:
        encoder = str(work / "encoder.pt")
        pretrain_step.run(cfg, p["train"], stats, encoder, work / "history.json", run_name="linear-eval-bench")

    t0 = time.perf_counter()
    extracted = extract_features.run(cfg, encoder, stats, p["train"], p["val"], p["test"], p["features"])
    feat = linear_eval.run(cfg.override({"eval.protocol": "features"}), p["features"], results, classifier)
    features_total = time.perf_counter() - t0

    t0 = time.perf_counter()
    seed = linear_eval.run(
        cfg.override({"eval.protocol": "crops"}),
        p["features"],
        results,
        classifier,
        encoder_path=encoder,
        stats_path=stats,
        train_path=p["train"],
        val_path=p["val"],
        test_path=p["test"],
    )
    seed_total = time.perf_counter() - t0

    device = resolve_device(cfg.pretrain.device)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": describe_device(device),
        "torch": torch.__version__,
        "config": cfg.to_dict(),
        "encoder": encoder,
        "features": {
            **{k: feat[k] for k in KEYS},
            "solver_seconds": feat["seconds"],
            "extract_seconds": extracted["seconds"],
            "seconds": features_total,
        },
        "seed": {**{k: seed[k] for k in KEYS}, "seconds": seed_total, "epochs": cfg.eval.crops_epochs},
        "speedup": seed_total / features_total,
        "test_top1_delta": feat["test_top1"] - seed["test_top1"],
    }


def table(rec: dict) -> str:
    lines = [
        f"linear eval · {rec['device_name']} · torch {rec['torch']} · {rec['date']}",
        f"{'protocol':<10}{'seconds':>10}{'val top-1':>11}{'test top-1':>12}{'test top-5':>12}",
    ]
    for name in ("features", "seed"):
        r = rec[name]
        lines.append(
            f"{name:<10}{r['seconds']:>10.2f}{r['val_top1']:>11.3f}{r['test_top1']:>12.3f}{r['test_top5']:>12.3f}"
        )
    lines.append(f"features is {rec['speedup']:.1f}x faster; test top-1 delta {rec['test_top1_delta']:+.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--config", help="YAML config file instead of a preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--encoder", help="encoder state dict to evaluate (default: pretrain one with the preset)")
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--workdir", help="keep intermediate files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.preset, args.config, args.overrides)
        with tempfile.TemporaryDirectory(prefix="linear-eval-bench-") as tmp:
            work = Path(args.workdir or tmp)
            work.mkdir(parents=True, exist_ok=True)
            rec = run(cfg, work, args.encoder)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(table(rec))
    if args.json:
        write_json(args.json, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
