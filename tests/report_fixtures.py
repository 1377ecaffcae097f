"""Inputs of the evaluation steps on tiny files, and a report rendered by the real steps.

Shared by the unit tests of the steps and the browser test of the report.
"""

import json
from pathlib import Path

import numpy as np

from kubeclr.atomic import write_json
from kubeclr.config import Config
from kubeclr.data.files import Split, save_arrays, save_split
from kubeclr.steps import linear_eval as linear_step
from kubeclr.steps import report as report_step

RUN = "<script>alert(1)</script>"
CLASSES = ("plane", "a<b & c", "cat", "dog")


def make_inputs(tmp, synthetic=True, health=None, knn_init=None):
    """Files of the steps before ``linear_eval``, with separable features (no training needed).

    ``knn_init``: the kNN monitor at epoch 0, as the pretrain step records it (first record, summary).
    """
    cfg = Config.from_dict(
        {
            "model": {"width": 4},
            "pretrain": {"device": "cpu"},
            "eval": {"knn_k": 5, "tsne_points": 40, "max_iter": 50, "l2_grid": [1e-4, 1e-3, 1e-2]},
        }
    )
    gen = np.random.default_rng(0)
    centers = gen.normal(size=(4, 16)) * 5
    paths, arrays = {}, {}
    for split, n in (("train", 40), ("val", 20), ("test", 40)):
        labels = np.arange(n) % 4
        meta = {"source": "sample", "synthetic": synthetic, "split": split, "seconds": 1.5, "md5": None}
        paths[split] = tmp / f"{split}.npz"
        save_split(paths[split], Split(gen.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels, CLASSES, meta))
        arrays[f"{split}_x"] = (centers[labels] + gen.normal(size=(n, 16))).astype(np.float32)
        arrays[f"{split}_y"] = labels.astype(np.int64)
    paths["stats"] = tmp / "stats.json"
    write_json(
        paths["stats"],
        {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "count": 40, "seconds": 0.1, "synthetic": synthetic},
    )
    paths["features"] = tmp / "features.npz"
    save_arrays(
        paths["features"],
        **arrays,
        class_names=np.asarray(CLASSES),
        meta=np.asarray(json.dumps({"seconds": 0.3, "feature_dim": 16, "device": "cpu"})),
    )
    epochs = [
        {
            "epoch": e,
            "loss": 5.0 - e,
            "lr": 0.1 * e,
            "images_per_second": 100.0 + e,
            "seconds": 2.0,
            "knn_top1": 0.2 * e,
            "step_loss": {"every": 2, "values": [5.5 - e + 0.1 * k for k in range(5)]},
        }
        for e in (1, 2, 3)
    ]  # with the kNN monitor's column
    if knn_init is not None:
        epochs[0]["knn_top1_init"] = knn_init
    summary = {
        "arch": "resnet18",
        "epochs": 3,
        "batch_size": 16,
        "final_loss": 2.0,
        "seconds": 6.0,
        "images_per_second": 101.0,
        "device": "cpu",
        **({"health": health} if health else {}),
        **({"knn_top1_init": knn_init} if knn_init is not None else {}),
    }
    paths["history"] = tmp / "history.json"
    write_json(paths["history"], {"epochs": epochs, "summary": summary, "config": cfg.to_dict()})
    return cfg, paths


def earlier_runs(history: Path, cfg: Config, n: int) -> None:
    """``n`` records of the run history, as earlier runs of ``cfg``'s series would have left them."""
    from kubeclr.report.history import append_record, series_name
    from kubeclr.storage.store import LocalStore

    for i in range(n):
        metrics = {
            "linear_eval": {"test_top1": 0.9 + 0.01 * i},
            "knn": {"test_top1": 0.8},
            "pretrain": {"images_per_second": 100.0 + i, "final_loss": 2.1},
        }
        record = {"end_time": f"2026-11-2{i}T03:00:00Z", "kfp_run_id": f"run-{i}", "run_name": f"<b>night {i}</b>"}
        append_record(LocalStore(history), series_name(cfg), {**record, "metrics": metrics})


def render_report(
    tmp: Path, run_name: str = RUN, health=None, history_runs: int | None = None, knn_init=None, overrides=None
):
    """Run ``linear_eval`` and ``report`` on :func:`make_inputs`; returns (results, metrics).

    Leaves ``results.json``, ``classifier.pt``, ``report.html``, ``report.md`` and
    ``metrics.json`` in ``tmp``; with ``history_runs`` (0 too: a first run), the run is compared
    with that many earlier runs of a ``file://`` history (``tmp/history``); without, no history
    is configured. ``knn_init`` as in :func:`make_inputs`; ``overrides`` change the config.
    """
    cfg, p = make_inputs(tmp, health=health, knn_init=knn_init)
    if overrides:
        cfg = cfg.override(overrides)
    if history_runs is not None:
        cfg = cfg.override({"storage.history_uri": (tmp / "history").as_uri()})
        earlier_runs(tmp / "history", cfg, history_runs)
    results = linear_step.run(cfg, p["features"], tmp / "results.json", tmp / "classifier.pt")
    metrics = report_step.run(
        cfg,
        run_name=run_name,
        train_path=p["train"],
        val_path=p["val"],
        test_path=p["test"],
        stats_path=p["stats"],
        history_path=p["history"],
        features_path=p["features"],
        results_path=tmp / "results.json",
        html_out=tmp / "report.html",
        markdown_out=tmp / "report.md",
        metrics_out=tmp / "metrics.json",
    )
    return results, metrics
