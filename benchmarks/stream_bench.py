"""Issue 31: streamed (``data.stream=true``) against resident pretraining: images/s, peak host memory, quality.

Real images: scikit-learn's digits (``benchmarks/digits.py``: upsampled, shifted, brightness-varied),
written as WebDataset shards by kubeclr's own writer (PNG, shuffled). The data step runs as in the
pipeline (resident: decoded into ``train.npz``; streamed: an index), then a fresh Python process runs
what the pretrain step runs (the split read as :mod:`kubeclr.launch.process` reads it, then
``train_simclr``) and reports:

- throughput: images/s of its last epoch (the first pays the start-up), at 32 and 96 px;
- memory: the resident set of the training process once its data is ready (``VmRSS`` before the
  first step) and its peak (``VmHWM``), and the largest of its decoding processes (``ru_maxrss`` of
  its children: a forked worker counts the pages it shares with its parent, so this overstates
  it), for the dataset ×1 and ×10 (each copy drawn with fresh shifts and brightness), at 96 px, over
  the same number of steps (×1 for 10 epochs, ×10 for one): on CPU the training's own memory swings
  from step to step, and a longer run reaches a higher peak whatever its data;
- quality: the same digits, 3 seeds, resident and streamed pretraining of the same recipe, kNN and
  linear top-1 of the test split (kubeclr's own evaluation on features computed once).

On 2 CPU cores the decoding processes and the training share the same cores: the numbers are a CPU
trade-off, not a GPU's. Results: ``benchmarks/results/stream-cpu-<date>.json``. glibc's ``MALLOC_*``
variables change the memory (the record keeps them under ``malloc_env``): the image sets
``MALLOC_ARENA_MAX=2``, so export it to measure what a pod does.

    .venv/bin/python benchmarks/stream_bench.py --json benchmarks/results/stream-cpu-<date>.json
    .venv/bin/python benchmarks/stream_bench.py --quick --json /tmp/stream.json   # a check, not a result
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
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

from kubeclr.config import load_config
from kubeclr.core.device import describe_device
from kubeclr.cpus import usable_cpus
from kubeclr.data.cifar import Batch
from kubeclr.data.formats import Splits
from kubeclr.data.shard_writer import write_shards

CLASS_NAMES = tuple(str(d) for d in range(10))


def digit_images(copies: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` draws of the 1,797 digits (fresh shifts and brightness each), ``(N, 3, size, size)`` uint8."""
    from PIL import Image

    parts = [digits.digits_arrays(seed=c) for c in range(copies)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if size != images.shape[-1]:
        images = np.stack(
            [
                np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((size, size), Image.BICUBIC)).transpose(
                    2, 0, 1
                )
                for im in images
            ]
        )
    return images, labels


def write_dataset(root: Path, copies: int, size: int) -> Path:
    """Shards of ``copies`` × digits at ``size`` px: 4/5 train, 1/5 test (~64 shards of train)."""
    images, labels = digit_images(copies, size)
    cut = len(labels) * 4 // 5
    empty = Batch(images=images[:0], labels=labels[:0])
    splits = Splits(
        Batch(images[:cut], labels[:cut]), empty, Batch(images[cut:], labels[cut:]), images[:0], CLASS_NAMES
    )
    bound = max(20_000, sum(len(x.tobytes()) for x in images[:cut]) // 64)  # PNG is smaller: ≥ 64 shards
    write_shards(splits, root, shard_bytes=bound)
    return root


def data_step(shards: Path, out: Path, size: int, stream: bool) -> Path:
    from kubeclr.steps import download_split

    cfg = config(size, stream=stream, source=shards)
    out.mkdir(parents=True, exist_ok=True)
    download_split.run(cfg, out / "train.npz", out / "val.npz", out / "test.npz")
    return out


def config(size: int, *, stream: bool, source: Path | str = "/unused", **more):
    sets = {
        "data.format": "webdataset",
        "data.source": str(source),
        "data.md5": "none",
        "data.image_size": size,
        "data.stream": stream,
        "data.workers": 2,
        "data.train_limit": 0,
        "data.val_limit": 0,
        "data.test_limit": 0,
        "pretrain.device": "cpu",
        "pretrain.knn_every": 0,
        "pretrain.batch_size": 128,
        "model.width": 8,
        **more,
    }
    return load_config("smoke").override(sets)


# -- the child: one pretraining process, as the pretrain step runs it ------------------------------


def child(args: argparse.Namespace) -> int:
    from kubeclr.core.train import train_simclr
    from kubeclr.data.files import read_split
    from kubeclr.launch.process import _pretraining_images

    cfg = config(args.size, stream=args.child == "streamed", **{"pretrain.epochs": args.epochs})
    split = read_split("train split", Path(args.split) / "train.npz", unlabeled=True)
    images, _ = _pretraining_images(cfg, split, torch.device("cpu"))
    ready = status_mib("VmRSS")  # the data ready to train on, no step taken
    result = train_simclr(cfg, images, [0.2] * 3, [0.3] * 3, device=torch.device("cpu"))
    print(
        json.dumps(
            {
                "images": len(images),
                "epochs": args.epochs,
                "images_per_second": result.history[-1]["images_per_second"],
                "epoch_seconds": [round(r["seconds"], 2) for r in result.history],
                "ready_rss_mib": ready,
                "peak_rss_mib": status_mib("VmHWM"),
                "peak_worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )
    return 0


def status_mib(field: str) -> float:
    """A memory field of this process's ``/proc/self/status`` (``VmRSS``, ``VmHWM``: the peak), in MiB."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def run_child(mode: str, split: Path, size: int, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--split", str(split), "--size", str(size)]
    proc = subprocess.run([*cmd, "--epochs", str(epochs)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{mode} pretraining failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the reader alone: ours against the webdataset package ----------------------------------------


def loader_rates(shards: Path, split: Path, size: int, repeats: int) -> dict:
    """Images/s of one epoch's train batches read and decoded, no training: kubeclr's stream and the
    ``webdataset`` package's pipeline over the same shards, the same samples (the train split's: the
    package selects them by key, as ours does by position; the rest of a shard is read, not decoded),
    the same decoder (``decode_image``), shuffle buffer, batch size and decoding processes, both cut
    into the same fixed-size batches (``_batches``: each mixes every process's chunks); alternated
    ``repeats`` times (the median is kept).

    Twice: ``workers`` (``data.workers`` processes, as pretraining reads) and ``in_process`` (the
    reader alone in this process, no DataLoader: what each reader costs per image, without the
    processes' start and handover; ours still cuts its fixed-size batches)."""
    import webdataset as wds

    from kubeclr.data.files import read_split
    from kubeclr.data.images import decode_image
    from kubeclr.data.stream import ShardStream, _batches, epoch_shards, ordered_chunks
    from kubeclr.launch.process import _pretraining_images

    cfg = config(size, stream=True)
    ours_images, _ = _pretraining_images(
        cfg, read_split("train", split / "train.npz", unlabeled=True), torch.device("cpu")
    )
    batch, workers, buffer = cfg.pretrain.batch_size, cfg.data.workers, cfg.data.shuffle_buffer
    steps = ours_images.steps(batch, 1)
    train_keys: set[str] = set()  # "<shard>:<key>", as ours names a sample
    with ordered_chunks(ours_images.index, chunk=256) as chunks:
        for _, _, names in chunks:
            train_keys.update(names)

    def ours(epoch: int) -> int:
        with ours_images.epoch(epoch, rank=0, world=1, per_rank=batch, steps=steps) as batches:
            return sum(len(b) for b in batches)

    def ours_in_process(epoch: int) -> int:
        mine = epoch_shards(ours_images.index, seed=ours_images.seed, epoch=epoch, rank=0, world=1)
        stream = ShardStream(ours_images.index, mine, seed=(ours_images.seed, epoch, 0), buffer=buffer, chunk=batch)
        return sum(len(b) for b in _batches(iter(stream), batch, steps, pin=False))

    def pipeline(epoch: int, chunk: int):
        urls = sorted(str(f) for f in shards.glob("train-*.tar"))
        return (
            wds.WebDataset(urls, shardshuffle=len(urls), seed=epoch, empty_check=False)
            .select(lambda s: f"{Path(s['__url__']).name}:{s['__key__']}" in train_keys)
            .shuffle(buffer)
            .map(lambda s: decode_image(s["png"], size, name=s["__key__"]))
            .batched(chunk, collation_fn=lambda images: (torch.from_numpy(np.stack(images)), None, None))
        )

    def package_in_process(epoch: int) -> int:
        return sum(len(b) for b in _batches(iter(pipeline(epoch, batch)), batch, steps, pin=False))

    def package(epoch: int) -> int:  # its chunks cut into the same fixed batches as ours, each mixing all processes
        loader = torch.utils.data.DataLoader(
            pipeline(epoch, -(-batch // workers)), batch_size=None, num_workers=workers, prefetch_factor=2
        )
        chunks = iter(loader)
        try:
            return sum(len(b) for b in _batches(chunks, batch, steps, pin=False))
        finally:  # stopped inside the timing, as ours are (left to the collector, they decode beside the next run)
            chunks._shutdown_workers()

    readers = {
        "workers": (("kubeclr", ours), ("webdataset", package)),
        "in_process": (("kubeclr", ours_in_process), ("webdataset", package_in_process)),
    }
    out: dict = {"images_per_epoch": steps * batch, "workers": workers, "webdataset_version": wds.__version__}
    for how, pair in readers.items():
        rates: dict[str, list[float]] = {name: [] for name, _ in pair}
        for r in range(repeats):
            for name, read in pair:
                t0 = time.perf_counter()
                n = read(r + 1)
                rates[name].append(n / (time.perf_counter() - t0))
        row = {name: {"images_per_second": statistics.median(v), "runs": v} for name, v in rates.items()}
        row["kubeclr_over_webdataset"] = row["kubeclr"]["images_per_second"] / row["webdataset"]["images_per_second"]
        out[how] = row
    return out


# -- quality ---------------------------------------------------------------------------------------


def quality(shards: Path, work: Path, seeds: list[int], epochs: int) -> dict:
    """kNN and linear top-1 of resident and streamed pretraining on the same data, per seed."""
    from kubeclr.core.train import train_simclr
    from kubeclr.data.files import read_split
    from kubeclr.eval.features import extract_features
    from kubeclr.eval.knn import knn_accuracy
    from kubeclr.eval.linear import linear_eval_features
    from kubeclr.launch.process import _pretraining_images

    cpu = torch.device("cpu")
    resident = data_step(shards, work / "q-resident", 32, False)
    streamed = data_step(shards, work / "q-streamed", 32, True)
    splits = {s: read_split(s, resident / f"{s}.npz") for s in ("train", "val", "test")}
    pixels = splits["train"].images / 255.0
    mean, std = pixels.mean(axis=(0, 2, 3)).tolist(), pixels.std(axis=(0, 2, 3)).tolist()
    out: dict = {"resident": [], "streamed": []}
    for seed in seeds:
        for mode, folder in (("resident", resident), ("streamed", streamed)):
            cfg = config(32, stream=mode == "streamed", **{"pretrain.epochs": epochs, "pretrain.seed": seed})
            split = read_split("train", folder / "train.npz", unlabeled=True)
            images, _ = _pretraining_images(cfg, split, cpu)
            t0 = time.perf_counter()
            model = train_simclr(cfg, images, mean, std, device=cpu).model
            feats = {}
            for s, sp in splits.items():  # evaluation on the resident splits: the same for both modes
                feats[f"{s}_x"] = extract_features(model.encoder, sp.images, mean, std, device=cpu)
                feats[f"{s}_y"] = torch.from_numpy(sp.labels)
            knn = knn_accuracy(
                feats["train_x"],
                feats["train_y"],
                feats["test_x"],
                feats["test_y"],
                k=20,
                temperature=0.1,
                num_classes=10,
            )
            linear = linear_eval_features(feats, list(CLASS_NAMES), cfg.eval, device=cpu).results["test_top1"]
            out[mode].append({"seed": seed, "knn": knn, "linear": linear, "seconds": time.perf_counter() - t0})
            print(f"quality seed {seed} {mode}: kNN {knn:.3f} linear {linear:.3f}", flush=True)
    for mode in ("resident", "streamed"):
        for key in ("knn", "linear"):
            values = [r[key] for r in out[mode]]
            out[f"{mode}_{key}"] = {"mean": statistics.mean(values), "std": statistics.pstdev(values)}
    out["gap_points"] = {
        key: 100 * (out[f"streamed_{key}"]["mean"] - out[f"resident_{key}"]["mean"]) for key in ("knn", "linear")
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="where the record goes")
    p.add_argument("--quick", action="store_true", help="small sizes and one seed: checks the script, not a result")
    p.add_argument(
        "--only",
        choices=("throughput", "memory", "loader", "quality"),
        action="append",
        help="run only these parts (repeatable)",
    )
    p.add_argument("--child", choices=("resident", "streamed"), help=argparse.SUPPRESS)
    p.add_argument("--split", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.json is None:
        p.error("--json is required")
    torch.set_num_threads(usable_cpus())
    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    sizes, copies = ((32, 96), (1, 10)) if not args.quick else ((32,), (1, 2))
    record: dict = {
        "benchmark": "stream",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(torch.device("cpu")),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv,
        "settings": {"workers": 2, "batch_size": 128, "width": 8, "shuffle_buffer": 2048, "preset": "smoke"},
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},  # glibc's, inherited
        "throughput": {},
        "memory": {},
    }

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")

    parts = set(args.only or ("throughput", "memory", "loader", "quality"))
    for size in sizes if "throughput" in parts else ():  # images/s, dataset ×1, the second epoch
        shards = write_dataset(work / f"shards-{size}-x1", 1, size)
        row = {}
        for mode in ("resident", "streamed"):
            split = data_step(shards, work / f"{mode}-{size}-x1", size, mode == "streamed")
            row[mode] = run_child(mode, split, size, epochs=2)
            print(f"{size} px ×1 {mode}: {row[mode]}", flush=True)
        row["streamed_over_resident"] = row["streamed"]["images_per_second"] / row["resident"]["images_per_second"]
        record["throughput"][f"{size}px"] = row
        save()
    size = sizes[-1]  # memory against dataset size, the largest images, the same number of steps:
    for n in copies if "memory" in parts else ():  # ×1 for 10 epochs, ×10 for one
        shards = work / f"shards-{size}-x{n}"
        if not shards.exists():
            write_dataset(shards, n, size)
        row = {}
        for mode in ("resident", "streamed"):
            split = data_step(shards, work / f"{mode}-{size}-x{n}", size, mode == "streamed")
            row[mode] = run_child(mode, split, size, epochs=copies[-1] // n)
            print(f"{size} px ×{n} {mode}: {row[mode]}", flush=True)
        record["memory"][f"x{n}"] = row
        save()
    if "memory" in parts:
        small, large = (record["memory"][f"x{n}"] for n in copies)
        record["memory"]["growth"] = {
            mode: large[mode]["peak_rss_mib"] / small[mode]["peak_rss_mib"] for mode in ("resident", "streamed")
        }
        record["memory"]["ready_growth"] = {
            mode: large[mode]["ready_rss_mib"] / small[mode]["ready_rss_mib"] for mode in ("resident", "streamed")
        }
        record["memory"]["streamed_flat_within_20_percent"] = record["memory"]["growth"]["streamed"] <= 1.2
        save()
    n = copies[-1]  # the reader alone, kubeclr's and the package's, over the ×10 set: an epoch long
    for size in sizes if "loader" in parts else ():  # enough that starting the processes is not the measure
        shards = work / f"shards-{size}-x{n}"
        if not shards.exists():
            write_dataset(shards, n, size)
        split = data_step(shards, work / f"streamed-{size}-x{n}", size, True)
        row = loader_rates(shards, split, size, repeats=1 if args.quick else 5)
        print(f"{size} px reader alone: {json.dumps(row)}", flush=True)
        record.setdefault("loader", {})[f"{size}px"] = row
        save()
    if "quality" in parts:
        digits_shards = write_dataset(work / "shards-quality", 1, 32)
        seeds, epochs = ([0], 3) if args.quick else ([0, 1, 2], 15)
        record["quality"] = {"epochs": epochs, **quality(digits_shards, work, seeds, epochs)}
        save()
        print(f"quality gap (streamed - resident, points): {record['quality']['gap_points']}")
    print(json.dumps({k: record.get(k) for k in ("throughput", "memory", "loader")}, indent=1)[:3000])
    print(f"record: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
