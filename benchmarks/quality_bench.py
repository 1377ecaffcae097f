"""Real-data quality benchmark: SimCLR on scanned digits, beside three baselines, in one run.

Data: scikit-learn's 1,797 handwritten digits in the CIFAR-10 layout
(``benchmarks/digits.py``: 1,120 train / 280 val / 397 test). For every seed:

- ``ours``, for each variant: ``simclr-pipeline run --local`` (the real six-step
  pipeline through kfp.local) with the preset's recipe plus the variant's
  ``--set`` pairs; its own linear and kNN accuracy from ``metrics.json``, and
  the same encoder under the independent probe below;
- ``plain``: ``benchmarks/plain_simclr.py``, a SimCLR written apart from kubeclr
  (own model, loss and loop, torchvision transforms, ``torch.optim.SGD``), at
  the same epochs, batch and width;
- ``random``: our encoder at its random initialisation (seeded);
- ``pixels``: the raw pixels (seed-independent, measured once).

The independent probe scores every encoder the same way, without kubeclr's
evaluation code: scikit-learn's multinomial logistic regression on standardised
features, C picked on val from a fixed grid, and a weighted cosine kNN
(k 20, τ 0.1, Wu et al. 2018), bank = train, queries = test.

Writes one JSON record (device, torch version, date, commands, seeds, every
run, mean ± std per method) and prints a table.

    .venv/bin/python benchmarks/quality_bench.py --seeds 0 1 2 \
        --json benchmarks/results/quality-digits-cpu-<date>.json
    .venv/bin/python benchmarks/quality_bench.py --seeds 0 --no-plain --no-baselines \
        --variant lars-linear=pretrain.lr_scaling=linear,pretrain.lr=0.3 --json FILE
    .venv/bin/python benchmarks/quality_bench.py --no-baselines --plain warmup-cosine=schedule=warmup-cosine \
        --variant same=pretrain.optimizer=sgd,pretrain.lr_scaling=none,pretrain.lr=0.24,… --json FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits
import plain_simclr

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
KNN_K, KNN_T = 20, 0.1


# -- the independent probe ----------------------------------------------------


def linear_probe(f: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> float:
    """Test top-1 of logistic regression on standardised features, C chosen on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f["train"])
    x = {s: scaler.transform(v) for s, v in f.items()}
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
        val = clf.score(x["val"], y["val"])
        if best is None or val > best[0]:
            best = (val, clf)
    return float(best[1].score(x["test"], y["test"]))


def knn_probe(f: dict[str, np.ndarray], y: dict[str, np.ndarray], k: int = KNN_K, t: float = KNN_T) -> float:
    """Test top-1 of weighted cosine kNN against the train features."""
    bank = f["train"] / np.linalg.norm(f["train"], axis=1, keepdims=True).clip(1e-12)
    query = f["test"] / np.linalg.norm(f["test"], axis=1, keepdims=True).clip(1e-12)
    sim = query @ bank.T  # (M, N)
    idx = np.argsort(-sim, axis=1)[:, :k]  # (M, k)
    weight = np.exp(np.take_along_axis(sim, idx, 1) / t)
    votes = np.zeros((len(query), 10))
    np.add.at(votes, (np.arange(len(query))[:, None], y["train"][idx]), weight)
    return float((votes.argmax(1) == y["test"]).mean())


def probe(encoder: torch.nn.Module, splits: dict, mean: list[float], std: list[float]) -> dict[str, float]:
    f = {s: plain_simclr.embed(encoder, x, mean, std) for s, (x, _) in splits.items()}
    y = {s: lab for s, (_, lab) in splits.items()}
    return {"probe_linear_top1": linear_probe(f, y), "probe_knn_top1": knn_probe(f, y)}


# -- the methods ---------------------------------------------------------------


def digit_splits(data_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pipeline's default split of the digits tarball: batches 1-4 train, batch 5 val, test batch test."""
    images, labels = digits.digits_arrays(data_seed)
    t, b = digits.TEST_SIZE, digits.BATCH_SIZE
    return {
        "train": (images[t : t + 4 * b], labels[t : t + 4 * b]),
        "val": (images[t + 4 * b :], labels[t + 4 * b :]),
        "test": (images[:t], labels[:t]),
    }


def train_stats(splits: dict) -> tuple[list[float], list[float]]:
    x = splits["train"][0].astype(np.float64) / 255
    return x.mean(axis=(0, 2, 3)).tolist(), x.std(axis=(0, 2, 3)).tolist()


def run_ours(tarball: Path, overrides: list[str], seed: int, out: Path, splits: dict, stats) -> dict:
    cli = Path(sys.executable).with_name("simclr-pipeline")
    cmd = [
        str(cli),
        "run",
        "--local",
        "--preset",
        ARGS.preset,
        "--cifar-source",
        str(tarball),
        "--cifar-md5",
        "none",
        "--output-dir",
        str(out),
        "--run-name",
        out.name,
        *[a for kv in [*COMMON_SETS, f"pretrain.seed={seed}", *overrides] for a in ("--set", kv)],
    ]
    shutil.rmtree(out, ignore_errors=True)  # a rerun into --keep replaces this run's folder
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ours failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    found = sorted((out / ".kfp").rglob("pretrain/history"), key=lambda f: f.stat().st_mtime)
    if not found:
        raise SystemExit(f"ours: no pretrain/history under {out / '.kfp'} (did kfp.local change its layout?)")
    history = json.loads(found[-1].read_text())
    from kubeclr.config import load_config
    from kubeclr.core.model import build_encoder

    cfg = load_config(ARGS.preset, overrides=[*COMMON_SETS, *overrides])
    encoder = build_encoder(cfg.model)
    encoder.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))
    return {
        "linear_top1": m["linear_eval"]["test_top1"],
        "knn_top1": m["knn"]["test_top1"],
        "final_loss": m["pretrain"]["final_loss"],
        "loss_curve": [r["loss"] for r in history["epochs"]],
        "knn_curve": [r.get("knn_top1") for r in history["epochs"]],
        "pretrain_seconds": m["pretrain"]["seconds"],
        "wall_seconds": time.perf_counter() - t0,
        "command": " ".join(cmd),
        **probe(encoder, splits, *stats),
    }


def run_plain(fields: dict, seed: int, splits: dict, stats) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the device ours trains on
    recipe = plain_simclr.Recipe(
        epochs=ARGS.epochs, batch_size=ARGS.batch_size, width=ARGS.width, seed=seed, device=device, **fields
    )
    t0 = time.perf_counter()
    encoder, losses = plain_simclr.train(splits["train"][0], recipe, log=lambda m: print(m, flush=True))
    return {
        "final_loss": losses[-1],
        "loss_curve": losses,
        "pretrain_seconds": time.perf_counter() - t0,
        "recipe": dataclasses.asdict(recipe),
        **probe(encoder, splits, *stats),
    }


def run_random(seed: int, splits: dict, stats) -> dict:
    from kubeclr.config import load_config
    from kubeclr.core.model import build_encoder

    torch.manual_seed(seed)
    return probe(build_encoder(load_config(ARGS.preset, overrides=COMMON_SETS).model), splits, *stats)


def run_pixels(splits: dict) -> dict:
    f = {s: x.reshape(len(x), -1).astype(np.float32) / 255 for s, (x, _) in splits.items()}
    y = {s: lab for s, (_, lab) in splits.items()}
    return {"probe_linear_top1": linear_probe(f, y), "probe_knn_top1": knn_probe(f, y)}


# -- driver ----------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("linear_top1", "knn_top1", "probe_linear_top1", "probe_knn_top1", "final_loss", "pretrain_seconds"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {
                "mean": statistics.fmean(vals),
                "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,  # population std (n, not n - 1)
                "n": len(vals),
            }
    return out


BENCH_FIELDS = {"epochs": "--epochs", "batch_size": "--batch-size", "width": "--width", "seed": "--seeds"}


def plain_fields(sets: list[str]) -> dict:
    """``["lr=0.3", …]`` as typed fields of :class:`plain_simclr.Recipe`, checked by building one."""
    fields = {k: f for k, f in plain_simclr.Recipe.__dataclass_fields__.items() if k not in ("device",)}
    out = {}
    for item in sets:
        k, _, v = item.partition("=")
        if k in BENCH_FIELDS:
            raise SystemExit(f"--plain {item}: the benchmark sets {k} for every method; use {BENCH_FIELDS[k]}")
        if k not in fields:
            raise SystemExit(
                f"--plain {item}: unknown field (allowed: {', '.join(sorted(set(fields) - set(BENCH_FIELDS)))})"
            )
        kind = type(fields[k].default)
        try:
            if kind is bool:
                if v.lower() not in ("true", "false"):
                    raise ValueError(v)
                out[k] = v.lower() == "true"
            else:
                out[k] = kind(v)
        except ValueError:
            raise SystemExit(f"--plain {item}: {k} takes a {kind.__name__}, not {v!r}") from None
    try:
        plain_simclr.Recipe(**out)
    except ValueError as e:
        raise SystemExit(f"--plain {','.join(sets)}: {e}") from None
    return out


def check_variants(variants: list[tuple[str, list[str]]]) -> None:
    from kubeclr.config import load_config
    from kubeclr.errors import ConfigError

    for name, overrides in variants:
        try:
            load_config(ARGS.preset, overrides=[*COMMON_SETS, *overrides])
        except ConfigError as e:
            raise SystemExit(f"--variant {name}: {e}") from None


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, sets = text.partition("=")
    if not sep:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value[,key=value…] or NAME=")
    return name, [s for s in sets.split(",") if s]


def main(argv: list[str] | None = None) -> int:
    global ARGS, COMMON_SETS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=True, help="where the record goes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the digits tarball (default 0)")
    p.add_argument("--preset", default="smoke", help="preset of 'ours' (default smoke)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=32)
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=k=v,…",
        help="a recipe of 'ours' on top of the preset (repeatable; default: the preset's own, 'preset=')",
    )
    p.add_argument(
        "--plain",
        action="append",
        default=[],
        metavar="NAME=field=v,…",
        help="a recipe of the plain SimCLR: fields of plain_simclr.Recipe (schedule, lr, weight_decay, …) "
        "(repeatable; default: its defaults, 'onecycle=')",
    )
    p.add_argument("--no-plain", action="store_true", help="skip the plain SimCLR")
    p.add_argument("--no-baselines", action="store_true", help="skip raw pixels and the random encoder")
    p.add_argument("--keep", type=Path, help="keep the runs' output folders here (a rerun replaces them)")
    ARGS = p.parse_args(argv)
    COMMON_SETS = [
        f"pretrain.epochs={ARGS.epochs}",
        f"pretrain.batch_size={ARGS.batch_size}",
        f"model.width={ARGS.width}",
        "data.train_limit=0",
        "data.val_limit=0",
        "data.test_limit=0",
        "pretrain.device=cpu" if not torch.cuda.is_available() else "pretrain.device=auto",
    ]
    plains = [(name, plain_fields(sets)) for name, sets in (parse_variant(v) for v in ARGS.plain or ["onecycle="])]
    variants = [parse_variant(v) for v in (ARGS.variant or ["preset="])]
    check_variants(variants)  # a bad key fails now, not after an hour of other methods
    splits = digit_splits(ARGS.data_seed)
    stats = train_stats(splits)
    work = Path(tempfile.mkdtemp(prefix="quality-bench-")) if ARGS.keep is None else ARGS.keep
    work.mkdir(parents=True, exist_ok=True)
    tarball = work / "digits.tar.gz"
    md5 = digits.write_digits_tarball(tarball, ARGS.data_seed)

    record = {
        "benchmark": "quality-digits",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv,
        "data": {
            "source": "sklearn load_digits via benchmarks/digits.py",
            "seed": ARGS.data_seed,
            "md5": md5,
            **{f"{s}_size": len(v[1]) for s, v in splits.items()},
        },
        "budget": {
            "epochs": ARGS.epochs,
            "batch_size": ARGS.batch_size,
            "width": ARGS.width,
            "steps": ARGS.epochs * (len(splits["train"][1]) // ARGS.batch_size),
        },
        "probe": {
            "linear": f"sklearn LogisticRegression, standardised, C in {list(C_GRID)} on val",
            "knn": f"weighted cosine, k {KNN_K}, t {KNN_T}",
        },
        "seeds": ARGS.seeds,
        "methods": {},
    }

    def save() -> None:
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(json.dumps(record, indent=2) + "\n")

    if not ARGS.no_baselines:
        record["methods"]["pixels"] = {"runs": [run_pixels(splits)]}
        record["methods"]["random"] = {"runs": [run_random(s, splits, stats) for s in ARGS.seeds]}
        save()
    for seed in ARGS.seeds:
        for name, fields in plains if not ARGS.no_plain else ():
            entry = record["methods"].setdefault(f"plain:{name}", {"fields": fields, "runs": []})
            entry["runs"].append(run_plain(fields, seed, splits, stats))
            save()
        for name, overrides in variants:
            entry = record["methods"].setdefault(f"ours:{name}", {"overrides": overrides, "runs": []})
            entry["runs"].append(run_ours(tarball, overrides, seed, work / f"{name}-s{seed}", splits, stats))
            print(
                f"ours:{name} seed {seed}: "
                + json.dumps({k: v for k, v in entry["runs"][-1].items() if "top1" in k or k == "final_loss"}),
                flush=True,
            )
            save()
    for entry in record["methods"].values():
        entry["summary"] = summarise(entry["runs"])
    save()
    print(table(record))
    return 0


def table(record: dict) -> str:
    def cell(s: dict, key: str) -> str:
        if key not in s:
            return "–"
        v = s[key]
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v["n"] > 1 else f"{v['mean']:.3f}"

    rows = [
        "| method | linear (pipeline) | kNN (pipeline) | linear (probe) | kNN (probe) | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in record["methods"].items():
        s = entry["summary"]
        rows.append(
            f"| {name} | {cell(s, 'linear_top1')} | {cell(s, 'knn_top1')} | {cell(s, 'probe_linear_top1')} "
            f"| {cell(s, 'probe_knn_top1')} | {cell(s, 'final_loss')} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
