"""The ``pretrain`` pipeline step: files in, encoder and history out.

One process on one device trains in-process. When the step is given more than
one GPU and sees more than one, it re-launches itself under ``torchrun``
(``python -m kubeclr.train_entry``, one process per GPU) and waits; rank 0
writes the outputs either way.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kubeclr import distributed, train
from kubeclr.callbacks import Callback, CallbackList
from kubeclr.config import Config
from kubeclr.errors import DataError, UserError
from kubeclr.io import Split, load_split, load_stats, read_json, write_bytes_atomic, write_json
from kubeclr.metrics import step_metrics, training_callback
from kubeclr.storage import open_store, parent_and_key, safe_segment

log = logging.getLogger(__name__)

KNN_QUERY = 1000   # held-out query images of the kNN monitor
KNN_BANK = 10000   # at most this many labelled bank images


class LogCallback(Callback):
    """Log the start and end of pretraining (epochs log themselves in :mod:`kubeclr.train`)."""

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        log.info("pretraining %s on %s: epochs %d-%d of %d, %d steps/epoch, %d process(es)",
                 info["arch"], info["device"], info["start_epoch"] + 1, info["epochs"], info["epochs"],
                 info["steps_per_epoch"], info["world_size"])

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        log.info("pretraining done: final loss %.4f, %.1fs, %.0f img/s",
                 summary["final_loss"], summary["seconds"], summary["images_per_second"])


def pretrain(cfg: Config, train_path: str | Path, stats_path: str | Path, encoder_out: str | Path,
             history_out: str | Path, *, run_name: str, checkpoint_uri: str = "", checkpoint_scope: str = "",
             gpus: int = 1, nodes: int = 1) -> dict:
    """Pretrain on the train split and write the encoder and the history.

    Args:
        cfg: full config.
        train_path: train split (``kubeclr.io.save_split`` format).
        stats_path: stats JSON (``mean``, ``std``).
        encoder_out: where the encoder ``state_dict`` goes (``torch.save``).
        history_out: where the history JSON goes (epochs, summary, config).
        run_name: labels the exported metrics.
        checkpoint_uri: overrides ``storage.checkpoint_uri`` when non-empty;
            checkpoints go there and the newest complete one is resumed.
        checkpoint_scope: when non-empty, checkpoints (and multi-node outputs) go to
            ``<checkpoint_uri>/<checkpoint_scope>`` instead: the pipeline passes the
            KFP run ID, so a retried task resumes and a new run does not.
        gpus: GPUs of this pod; with more than one (and that many visible) the
            step runs ``torchrun --nproc_per_node=gpus``.
        nodes: with more than one, this step only launches a Training Operator
            PyTorchJob of ``nodes`` pods with ``gpus`` GPUs each
            (:func:`kubeclr.pytorchjob.run_multinode`); its outputs and
            checkpoints go under ``checkpoint_uri``, which must be object storage.

    Returns:
        The metrics.json ``pretrain`` block.

    Raises:
        DataError: unreadable split or stats file.
        UserError: torchrun failed, or any user error from training.
    """
    if checkpoint_uri:
        cfg = cfg.override({"storage.checkpoint_uri": checkpoint_uri})
    if checkpoint_scope and cfg.storage.checkpoint_uri:
        scoped = f"{cfg.storage.checkpoint_uri.rstrip('/')}/{safe_segment(checkpoint_scope)}"
        cfg = cfg.override({"storage.checkpoint_uri": scoped})
    if nodes < 2 and os.environ.get("KUBECLR_LAUNCHER_ONLY") == "true":
        raise UserError(f"this pipeline was compiled with --launcher (pretraining runs as a PyTorchJob): "
                        f"set nodes to 2 or more (got {nodes}), or compile without --launcher")
    with step_metrics(cfg.metrics, run_name, "pretrain"):
        if nodes > 1:
            return _launch_multinode(cfg, train_path, stats_path, encoder_out, history_out,
                                     run_name=run_name, nodes=nodes, gpus=gpus)
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus > 1 and visible > 1 and cfg.pretrain.device != "cpu":
            return _launch_torchrun(cfg, train_path, stats_path, encoder_out, history_out,
                                    run_name=run_name, nproc=min(gpus, visible))
        if gpus > 1:
            log.warning("%d GPUs requested but %d visible: training in one process", gpus, visible)
        ctx = distributed.init_from_env(cfg.pretrain.device)
        return run(cfg, train_path, stats_path, encoder_out, history_out, run_name=run_name, device=ctx.device)


def _launch_multinode(cfg: Config, train_path, stats_path, encoder_out, history_out, *, run_name: str,
                      nodes: int, gpus: int) -> dict:
    from kubeclr import pytorchjob

    uri = cfg.storage.checkpoint_uri
    if not uri.startswith("s3://"):
        raise UserError(f"nodes={nodes} needs checkpoint_uri to be an s3:// prefix the job's pods can reach "
                        f"(got {uri!r})")
    cluster = pytorchjob.ClusterSettings.from_env(nodes=nodes, gpus_per_node=gpus)
    return pytorchjob.run_multinode(cfg, train_path, stats_path, encoder_out, history_out, run_name=run_name,
                                    output_uri=f"{uri.rstrip('/')}/multinode", cluster=cluster,
                                    checkpoint_uri=f"{uri.rstrip('/')}/checkpoints",
                                    name=pytorchjob.job_name(uri))  # unique per run when the URI is run-scoped


def run(cfg: Config, train_path: str | Path, stats_path: str | Path, encoder_out: str | Path | None,
        history_out: str | Path | None, *, run_name: str, device: torch.device, output_uri: str = "") -> dict:
    """Train in this process (one rank of a group, or alone) and, on rank 0, write the outputs.

    Args:
        cfg, train_path, stats_path, encoder_out, history_out, run_name: as in :func:`pretrain`
            (either output path may be ``None`` when ``output_uri`` is used).
        device: this rank's device.
        output_uri: also upload ``encoder.pt``, ``history.json`` and ``summary.json`` under
            this store URI (multi-node jobs, whose pods share no filesystem).

    Returns:
        The metrics.json ``pretrain`` block.
    """
    split = _load_split(train_path)
    mean, std, _ = load_stats(stats_path)
    init_state = load_init_state(cfg.model.init)
    store = open_store(cfg.storage.checkpoint_uri) if cfg.storage.checkpoint_uri else None
    main = distributed.is_main()
    callbacks = CallbackList([LogCallback(), training_callback(cfg.metrics, run_name)] if main else [])
    knn_data = knn_split(split, cfg.data.seed) if cfg.pretrain.knn_every else None
    result = train.pretrain(cfg, split.images, mean, std, device=device, store=store, callbacks=callbacks,
                            knn_data=knn_data, init_state=init_state)
    if main:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in result.model.encoder.state_dict().items()}, buf)
        history = {"epochs": result.history, "summary": result.summary, "config": cfg.to_dict()}
        if encoder_out:
            write_bytes_atomic(encoder_out, buf.getvalue())
        if history_out:
            write_json(history_out, history)
        if output_uri:
            out = open_store(output_uri)
            out.write_bytes("encoder.pt", buf.getvalue())
            out.write_bytes("history.json", _json_bytes(history))
            out.write_bytes("summary.json", _json_bytes(result.summary))
    distributed.barrier()  # no rank exits (and tears down the group) before the outputs exist
    return result.summary


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _load_split(path: str | Path) -> Split:
    try:
        return load_split(path)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"train split {path}: cannot be read ({type(exc).__name__}: {exc})") from None


def load_init_state(init: str) -> dict | None:
    """The encoder state dict named by ``model.init`` when it is a URI (else ``None``).

    Raises:
        UserError: the object cannot be read or is not a plain state dict.
    """
    if init in ("random", "imagenet"):
        return None
    store, key = parent_and_key(init)
    blob = store.read_bytes(key)
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything unloadable is the user's file
        raise UserError(f"model.init={init}: not a weights-only torch state dict ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"model.init={init}: expected a state dict, got {type(state).__name__}")
    return state


def knn_split(split: Split, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bank and query sets for the kNN monitor, drawn from the train split.

    Pretraining never reads labels, so a held-out slice of its own images
    (``KNN_QUERY`` queries against up to ``KNN_BANK`` others) measures
    representation quality without touching val/test.
    """
    order = np.random.default_rng(seed).permutation(len(split))
    n_query = min(KNN_QUERY, len(split) // 5)
    query, bank = order[:n_query], order[n_query:n_query + KNN_BANK]
    return split.images[bank], split.labels[bank], split.images[query], split.labels[query]


def _launch_torchrun(cfg: Config, train_path: str | Path, stats_path: str | Path, encoder_out: str | Path,
                     history_out: str | Path, *, run_name: str, nproc: int) -> dict:
    """Run :mod:`kubeclr.train_entry` under torchrun with one process per GPU."""
    with tempfile.TemporaryDirectory(prefix="kubeclr-ddp-") as tmp:
        config_file = Path(tmp) / "config.json"
        write_json(config_file, cfg.to_dict())
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "kubeclr.train_entry", "--config", str(config_file), "--train", str(train_path),
               "--stats", str(stats_path), "--encoder-out", str(encoder_out), "--history-out", str(history_out),
               "--run-name", run_name]
        log.info("launching %d training processes: %s", nproc, " ".join(cmd))
        rc = subprocess.run(cmd, check=False).returncode
    if rc != 0:
        raise UserError(f"distributed pretraining failed: torchrun exited with code {rc} (see the ranks' log above)")
    return read_json(history_out)["summary"]
