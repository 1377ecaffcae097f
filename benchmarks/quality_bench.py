"""Real-data quality suite: SimCLR on several real image sets, beside three baselines, in one run.

Datasets (``benchmarks/suite_data.py``, all shipped inside installed packages):
``digits`` (scikit-learn's scanned digits, 1,120 / 280 / 397), ``scenes`` and
``closeups`` (patches of five natural photographs labelled by photo,
``benchmarks/photos.py``, 1,200 / 300 / 500 each; train, val and test come from
disjoint regions of each photo). For every dataset and every seed, on the same
splits:

- ``ours``, for each variant: ``simclr-pipeline run --local`` (the real six-step
  pipeline through kfp.local) with the preset's recipe plus the variant's
  ``--set`` pairs; its own linear and kNN accuracy from ``metrics.json``, and
  the same encoder under the independent probe below. The preset's own recipe
  always runs (as ``preset``) unless a variant has no overrides or
  ``--skip-preset-recipe`` is given;
- ``plain``: ``benchmarks/plain_simclr.py``, a SimCLR written apart from kubeclr
  (own model, loss and loop, torchvision transforms, ``torch.optim.SGD``), at
  the same epochs, batch and width; the first ``--plain`` is the reference of
  the verdict;
- ``random``: our encoder at its random initialisation (seeded);
- ``pixels``: the raw pixels (seed-independent, measured once).

The independent probe scores every encoder the same way, without kubeclr's
evaluation code: scikit-learn's multinomial logistic regression on standardised
features, C picked on val from a fixed grid, and a weighted cosine kNN
(k 20, τ 0.1, Wu et al. 2018), bank = train, queries = test.

Each variant gets a verdict per dataset against issue 28's targets
(``benchmarks/quality_targets.py``). Writes one JSON record (device, torch
version, date, commands, seeds, per dataset: data, every run, mean ± std per
method, verdicts; rewritten after every run) and prints a table per dataset.

    .venv/bin/python benchmarks/quality_bench.py --seeds 0 1 2 \
        --json benchmarks/results/quality-suite-cpu-<date>.json
    .venv/bin/python benchmarks/quality_bench.py --quick --json /tmp/quick.json   # minutes: a check, not a result
    .venv/bin/python benchmarks/quality_bench.py --datasets digits --seeds 0 --no-plain --no-baselines \
        --skip-preset-recipe --variant lars-linear=pretrain.lr_scaling=linear,pretrain.lr=0.3 --json FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_run
import plain_simclr
import quality_targets
import suite_data
from suite_data import digit_splits  # noqa: F401  (the digits' splits; benchmarks/digits_device.py uses them)

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
    votes = np.zeros((len(query), int(max(y["train"].max(), y["test"].max())) + 1))  # (M, C)
    np.add.at(votes, (np.arange(len(query))[:, None], y["train"][idx]), weight)
    return float((votes.argmax(1) == y["test"]).mean())


def probe(encoder: torch.nn.Module, splits: dict, mean: list[float], std: list[float]) -> dict[str, float]:
    f = {s: plain_simclr.embed(encoder, x, mean, std) for s, (x, _) in splits.items()}
    y = {s: lab for s, (_, lab) in splits.items()}
    return {"probe_linear_top1": linear_probe(f, y), "probe_knn_top1": knn_probe(f, y)}


# -- the methods ---------------------------------------------------------------


def train_stats(splits: dict) -> tuple[list[float], list[float]]:
    x = splits["train"][0].astype(np.float64) / 255
    return x.mean(axis=(0, 2, 3)).tolist(), x.std(axis=(0, 2, 3)).tolist()


def run_ours(tarball: Path, overrides: list[str], seed: int, out: Path, splits: dict, stats) -> dict:
    run = cli_run.run_local(ARGS.preset, [*COMMON_SETS, *data_sets(tarball), f"pretrain.seed={seed}", *overrides], out)
    m = run.metrics
    found = sorted((out / ".kfp").rglob("pretrain/history"), key=lambda f: f.stat().st_mtime)
    if not found:
        raise SystemExit(f"ours: no pretrain/history under {out / '.kfp'} (did kfp.local change its layout?)")
    history = json.loads(found[-1].read_text())
    from kubeclr.config import load_config
    from kubeclr.core.model import build_encoder

    cfg = load_config(ARGS.preset, overrides=[*COMMON_SETS, *overrides])
    encoder = build_encoder(cfg.model)
    encoder.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))
    health = m["pretrain"].get("health") or {}
    return {
        "linear_top1": m["linear_eval"]["test_top1"],
        "knn_top1": m["knn"]["test_top1"],
        "final_loss": m["pretrain"]["final_loss"],
        "loss_curve": [r["loss"] for r in history["epochs"]],
        "knn_curve": [r.get("knn_top1") for r in history["epochs"]],
        "knn_top1_init": m["pretrain"].get("knn_top1_init", history["epochs"][0].get("knn_top1_init")),
        "health": health.get("status"),
        "pretrain_seconds": m["pretrain"]["seconds"],
        "wall_seconds": run.wall_seconds,
        "command": " ".join(run.command),
        "seed": seed,
        **probe(encoder, splits, *stats),
    }


def data_sets(tarball: Path) -> list[str]:
    """The ``--set`` pairs that point the pipeline at a suite tarball (its MD5 is the benchmark's own)."""
    return [f"data.source={tarball}", "data.md5=none"]


def run_plain(fields: dict, seed: int, splits: dict, stats, tag: str = "") -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the device ours trains on
    recipe = plain_simclr.Recipe(
        epochs=ARGS.epochs, batch_size=ARGS.batch_size, width=ARGS.width, seed=seed, device=device, **fields
    )
    t0 = time.perf_counter()
    encoder, losses = plain_simclr.train(splits["train"][0], recipe, log=lambda m: print(f"  {tag}{m}", flush=True))
    return {
        "final_loss": losses[-1],
        "loss_curve": losses,
        "pretrain_seconds": time.perf_counter() - t0,
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        **probe(encoder, splits, *stats),
    }


def run_random(seed: int, splits: dict, stats) -> dict:
    from kubeclr.config import load_config
    from kubeclr.core.model import build_encoder

    torch.manual_seed(seed)
    return {"seed": seed, **probe(build_encoder(load_config(ARGS.preset, overrides=COMMON_SETS).model), splits, *stats)}


def run_pixels(splits: dict) -> dict:
    f = {s: x.reshape(len(x), -1).astype(np.float32) / 255 for s, (x, _) in splits.items()}
    y = {s: lab for s, (_, lab) in splits.items()}
    return {"probe_linear_top1": linear_probe(f, y), "probe_knn_top1": knn_probe(f, y)}


# -- driver ----------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    out = {}
    keys = ("linear_top1", "knn_top1", "probe_linear_top1", "probe_knn_top1", "knn_top1_init", "final_loss")
    for key in (*keys, "pretrain_seconds"):
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


SETTINGS = re.compile(r",(?![^\[]*\])")  # the commas between settings, not those of a list value


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value,key=value`` as ``(NAME, ["key=value", …])``; a list value keeps its commas
    (``crop=augment.crop_scale=[0.2,1.0],pretrain.lr=2.4``)."""
    name, sep, sets = text.partition("=")
    if not sep:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value[,key=value…] or NAME=")
    return name, [s for s in SETTINGS.split(sets) if s]


def parse_datasets(text: str | None) -> list[str]:
    """``"digits,scenes"`` as a list of known dataset names (None: all of them)."""
    if text is None:
        return list(suite_data.DATASETS)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    known = ", ".join(suite_data.DATASETS)
    unknown = [n for n in names if n not in suite_data.DATASETS]
    if unknown:
        raise SystemExit(f"--datasets {text!r}: unknown {unknown} (known: {known})")
    if not names:
        raise SystemExit(f"--datasets {text!r}: no dataset named (known: {known})")
    return names


def with_preset_recipe(variants: list[tuple[str, list[str]]], skip: bool) -> list[tuple[str, list[str]]]:
    """The variants, with the preset's own recipe first unless one of them already is it (or ``skip``)."""
    names = [n for n, _ in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"--variant {twice[0]}: given more than once")
    if skip or any(not overrides for _, overrides in variants):
        return variants
    if "preset" in names:
        raise SystemExit("--variant preset=…: 'preset' names the preset's own recipe; choose another name")
    return [("preset", []), *variants]


QUICK = {"epochs": 2, "batch_size": 64, "width": 8, "train_limit": 320}  # --quick: a check, not a result
FULL = {"epochs": 30, "batch_size": 128, "width": 32, "train_limit": 0}


def budget(args: argparse.Namespace) -> dict:
    """Epochs, batch, width and train cap: the flags given, else ``--quick``'s or the full run's values."""
    base = QUICK if args.quick else FULL
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}


class Progress:
    """``[i/N] what`` lines with the time spent and a naive estimate of the time left."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()

    def start(self, what: str) -> None:
        print(f"[{self.done + 1}/{self.total}] {what} …", flush=True)

    def skip(self, what: str) -> None:
        self.total -= 1
        print(f"[–] {what}: in the resumed record", flush=True)

    def finish(self, what: str, result: dict) -> None:
        self.done += 1
        spent = time.perf_counter() - self.t0
        left = spent / self.done * (self.total - self.done)
        scores = {k: round(v, 4) for k, v in result.items() if "top1" in k and isinstance(v, float)}
        print(
            f"[{self.done}/{self.total}] {what}: {json.dumps(scores)} — {spent / 60:.1f} min so far, "
            f"~{left / 60:.0f} min left",
            flush=True,
        )


def dataset_entry(ds: suite_data.Dataset, splits: dict, md5: str, knobs: dict) -> dict:
    return {
        "data": {
            "source": ds.source,
            "classes": list(ds.class_names),
            "seed": ARGS.data_seed,
            "md5": md5,
            **{f"{s}_size": len(v[1]) for s, v in splits.items()},
        },
        "budget": {**knobs, "steps": knobs["epochs"] * (len(splits["train"][1]) // knobs["batch_size"])},
        "methods": {},
    }


def read_record(path: Path) -> dict:
    """An earlier record to resume, or one line saying why it cannot be."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--resume {path}: cannot read it as a record: {e}") from None
    if not isinstance(old, dict) or old.get("benchmark") != "quality-suite":
        raise SystemExit(f"--resume {path}: not a quality-suite record")
    return old


NOT_RECIPE = ("pretrain.seed", "pretrain.device")  # set per run and per machine; the rest is the recipe


def recipe(overrides: list[str]) -> dict:
    """What a recipe of ours trains with: every ``model``, ``augment`` and ``pretrain`` setting of the
    preset with ``overrides`` (and the budget) applied, as ``{"section.key": value}`` in JSON types."""
    from kubeclr.config import load_config

    cfg = load_config(ARGS.preset, overrides=[*COMMON_SETS, *overrides]).to_dict()
    flat = {f"{s}.{k}": v for s in ("model", "augment", "pretrain") for k, v in cfg[s].items()}
    return json.loads(json.dumps({k: v for k, v in flat.items() if k not in NOT_RECIPE}))


def recipe_change(before: dict, now: dict) -> str:
    """The settings that differ, as ``key a → b`` (for the line that says why runs are redone)."""
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return ", ".join(f"{k} {before.get(k, '–')} → {now.get(k, '–')}" for k in keys)


def resume(old: dict, path: Path, datasets: dict, recipe_of: Callable[[list[str]], dict] = recipe) -> None:
    """Keep the runs of an earlier record ``old`` of the same data and budget in ``datasets`` (in place).

    A run counts as done when it names its seed; one that does not (older records) is dropped, so it
    runs again rather than being counted under a seed it may not have had. A recipe of ours is kept
    only if it trained with what its overrides give today (``recipe_of``): a preset that changed
    since, or a record from before recipes were recorded, has its runs done again, not counted
    under the same name."""
    from kubeclr.errors import ConfigError

    for name, entry in datasets.items():
        before = old.get("datasets", {}).get(name)
        if before is None:
            continue
        for key in ("data", "budget"):
            if before[key] != entry[key]:
                raise SystemExit(
                    f"--resume {path}: {name}'s {key} differs from this run's "
                    f"({json.dumps(before[key])} != {json.dumps(entry[key])}): not the same benchmark"
                )
        for method, m in before["methods"].items():
            if method.startswith("ours:"):
                try:
                    now = recipe_of(m.get("overrides", []))
                except ConfigError as e:  # an override today's config no longer takes
                    now, why = None, f"its overrides no longer apply ({e})"
                else:
                    why = (
                        "the record predates recorded recipes" if "recipe" not in m else recipe_change(m["recipe"], now)
                    )
                if now is None or m.get("recipe") != now:
                    print(f"[!] {name} {method}: not resumed ({why}); asked for, it runs again", flush=True)
                    continue
            runs = [r for r in m["runs"] if method == "pixels" or r.get("seed") is not None]
            if runs:
                entry["methods"][method] = {
                    **{k: v for k, v in m.items() if k not in ("runs", "summary")},
                    "runs": runs,
                }


def done(methods: dict, method: str, seed: int | None = None) -> bool:
    """Whether ``method`` already has a run of ``seed`` (``None``: any run) in this record."""
    runs = methods.get(method, {}).get("runs", [])
    return any(seed is None or r.get("seed") == seed for r in runs)


def judge_all(name: str, entry: dict, reference: str | None) -> None:
    """Summaries of every method, and the verdict on every recipe of ours (in place)."""
    methods = entry["methods"]
    for m in methods.values():
        m["summary"] = summarise(m["runs"])
    random = methods.get("random", {}).get("summary")
    plain = methods.get(f"plain:{reference}", {}).get("summary") if reference else None
    entry["verdicts"] = {
        key: quality_targets.judge(name, m["summary"], random, plain)
        for key, m in methods.items()
        if key.startswith("ours:")
    }


def main(argv: list[str] | None = None) -> int:
    global ARGS, COMMON_SETS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=True, help="where the record goes")
    p.add_argument(
        "--datasets",
        metavar="NAME,…",
        help=f"comma-separated, from {', '.join(suite_data.DATASETS)} (default: all)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0; the targets want 3)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of every dataset's construction (default 0)")
    p.add_argument("--preset", default="smoke", help="preset of 'ours' (default smoke)")
    p.add_argument("--epochs", type=int, help=f"pretraining epochs (default {FULL['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"(default {FULL['batch_size']})")
    p.add_argument("--width", type=int, help=f"ResNet-18 base width (default {FULL['width']})")
    p.add_argument(
        "--train-limit",
        type=int,
        help="train on at most this many images per dataset, the same number per class (default 0: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes' check of the whole suite, not a result: "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " unless given",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=k=v,…",
        help="a recipe of 'ours' on top of the preset (repeatable); the preset's own recipe runs too, as 'preset'",
    )
    p.add_argument("--skip-preset-recipe", action="store_true", help="run only the --variant recipes")
    p.add_argument(
        "--plain",
        action="append",
        default=[],
        metavar="NAME=field=v,…",
        help="a recipe of the plain SimCLR: fields of plain_simclr.Recipe (schedule, lr, weight_decay, …) "
        "(repeatable; default: its defaults, 'onecycle='; the first is the verdict's reference)",
    )
    p.add_argument("--no-plain", action="store_true", help="skip the plain SimCLR")
    p.add_argument("--no-baselines", action="store_true", help="skip raw pixels and the random encoder")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RECORD",
        help="keep the runs of an earlier record (same datasets, data seed and budget) and run only what it lacks",
    )
    p.add_argument("--keep", type=Path, help="keep the tarballs and runs' output folders here (a rerun replaces them)")
    ARGS = p.parse_args(argv)
    knobs = budget(ARGS)
    for k in ("epochs", "batch_size", "width"):
        if knobs[k] < 1:
            raise SystemExit(f"--{k.replace('_', '-')} {knobs[k]}: must be at least 1")
    if knobs["train_limit"] < 0:
        raise SystemExit(f"--train-limit {knobs['train_limit']}: must be 0 (all) or more")
    if 0 < knobs["train_limit"] < knobs["batch_size"]:
        raise SystemExit(
            f"--train-limit {knobs['train_limit']}: below the batch size {knobs['batch_size']}: no full batch to train"
        )
    vars(ARGS).update(knobs)  # the plain SimCLR reads its budget from ARGS, like ours from COMMON_SETS
    COMMON_SETS = [
        f"pretrain.epochs={knobs['epochs']}",
        f"pretrain.batch_size={knobs['batch_size']}",
        f"model.width={knobs['width']}",
        "data.train_limit=0",
        "data.val_limit=0",
        "data.test_limit=0",
        "pretrain.device=cpu" if not torch.cuda.is_available() else "pretrain.device=auto",
    ]
    names = parse_datasets(ARGS.datasets)
    plains = [] if ARGS.no_plain else [(n, plain_fields(s)) for n, s in map(parse_variant, ARGS.plain or ["onecycle="])]
    variants = with_preset_recipe([parse_variant(v) for v in ARGS.variant], ARGS.skip_preset_recipe)
    if not variants:
        raise SystemExit("--skip-preset-recipe without any --variant: no recipe of ours to run")
    check_variants(variants)  # a bad key fails now, not after an hour of other methods
    reference = plains[0][0] if plains else None
    work = Path(tempfile.mkdtemp(prefix="quality-bench-")) if ARGS.keep is None else ARGS.keep

    from kubeclr.core.device import describe_device, resolve_device

    record = {
        "benchmark": "quality-suite",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(resolve_device()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv,
        "preset": ARGS.preset,
        "quick": ARGS.quick,
        "probe": {
            "linear": f"sklearn LogisticRegression, standardised, C in {list(C_GRID)} on val",
            "knn": f"weighted cosine, k {KNN_K}, t {KNN_T}",
        },
        "targets": {
            "above_random": quality_targets.ABOVE_RANDOM,
            "below_plain": quality_targets.BELOW_PLAIN,
            "absolute": quality_targets.ABSOLUTE,
            "min_seeds": quality_targets.MIN_SEEDS,
            "plain_reference": f"plain:{reference}" if reference else None,
        },
        "seeds": ARGS.seeds,
        "datasets": {},
    }
    earlier = read_record(ARGS.resume) if ARGS.resume else None
    if earlier is not None:
        record["resumed_from"] = [
            *earlier.get("resumed_from", []),
            {"argv": earlier.get("argv"), "date": earlier.get("date")},
        ]

    def save() -> None:
        for name, entry in record["datasets"].items():
            judge_all(name, entry, reference)
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(json.dumps(record, indent=2) + "\n")

    data = {}  # name -> (splits, stats, tarball)
    for name in names:
        ds = suite_data.DATASETS[name]
        print(f"building {name} …", flush=True)
        splits = ds.splits(ARGS.data_seed)
        if knobs["train_limit"]:
            splits = suite_data.cap_train(splits, knobs["train_limit"])
        if len(splits["train"][1]) < knobs["batch_size"]:
            n = len(splits["train"][1])
            raise SystemExit(f"--batch-size {knobs['batch_size']}: {name} has only {n} train images")
        (work / name).mkdir(parents=True, exist_ok=True)
        tarball = work / name / f"{name}.tar.gz"
        md5 = suite_data.write_tarball(tarball, splits, ds.class_names, name)
        data[name] = (splits, train_stats(splits), tarball)
        record["datasets"][name] = dataset_entry(ds, splits, md5, knobs)
    if earlier is not None:
        resume(earlier, ARGS.resume, record["datasets"])
    save()

    runs = len(ARGS.seeds) * len(names) * (len(plains) + len(variants))
    progress = Progress(runs + (0 if ARGS.no_baselines else len(names)))
    if not ARGS.no_baselines:
        for name in names:
            splits, stats, _ = data[name]
            progress.start(f"{name}: raw pixels and the random-init encoder")
            methods = record["datasets"][name]["methods"]
            if not done(methods, "pixels"):
                methods["pixels"] = {"runs": [run_pixels(splits)]}
            random = methods.setdefault("random", {"runs": []})["runs"]
            random += [run_random(s, splits, stats) for s in ARGS.seeds if not done(methods, "random", s)]
            progress.finish(f"{name}: baselines", random[-1])
            save()
    for seed in ARGS.seeds:
        for name in names:
            splits, stats, tarball = data[name]
            methods = record["datasets"][name]["methods"]
            for plain_name, fields in plains:
                what = f"{name} seed {seed} plain:{plain_name}"
                if done(methods, f"plain:{plain_name}", seed):
                    progress.skip(what)
                    continue
                progress.start(what)
                entry = methods.setdefault(f"plain:{plain_name}", {"fields": fields, "runs": []})
                entry["runs"].append(run_plain(fields, seed, splits, stats, tag=f"{name} "))
                progress.finish(what, entry["runs"][-1])
                save()
            for variant, overrides in variants:
                what = f"{name} seed {seed} ours:{variant}"
                if done(methods, f"ours:{variant}", seed):
                    progress.skip(what)
                    continue
                progress.start(what)
                entry = methods.setdefault(
                    f"ours:{variant}", {"overrides": overrides, "recipe": recipe(overrides), "runs": []}
                )
                out = work / name / f"{variant}-s{seed}"
                entry["runs"].append(run_ours(tarball, overrides, seed, out, splits, stats))
                progress.finish(what, entry["runs"][-1])
                save()
    save()
    for name, entry in record["datasets"].items():
        print(f"\n## {name}\n\n{table(entry)}")
    print(f"\nrecord: {ARGS.json}")
    return 0


def table(entry: dict) -> str:
    """One dataset's methods (mean ± std over seeds) and the verdict on each recipe of ours, as Markdown."""

    def cell(s: dict, key: str) -> str:
        if key not in s:
            return "–"
        v = s[key]
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v["n"] > 1 else f"{v['mean']:.3f}"

    rows = [
        "| method | runs | linear (pipeline) | kNN (pipeline) | linear (probe) | kNN (probe) | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in entry["methods"].items():
        s = m["summary"]
        rows.append(
            f"| {name} | {len(m['runs'])} | {cell(s, 'linear_top1')} | {cell(s, 'knn_top1')} "
            f"| {cell(s, 'probe_linear_top1')} | {cell(s, 'probe_knn_top1')} | {cell(s, 'final_loss')} |"
        )
    rows += ["", *(f"- verdict {k}: {quality_targets.describe(v)}" for k, v in entry.get("verdicts", {}).items())]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
