"""The ``pretrain`` step: files in, encoder and history out, trained by the engine that fits.

One node trains in the step's own pod (in-process, or torchrun across its
GPUs); several nodes make the step a launcher of a multi-node job
(:func:`kubeclr.launch.choose_engine`). Rank 0 writes the outputs either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeclr.config import Config
from kubeclr.core.device import cuda_report, require_given_gpus, resolve_device
from kubeclr.errors import UserError
from kubeclr.launch.engines import choose_engine
from kubeclr.launch.process import TrainFiles
from kubeclr.launch.settings import LaunchSettings
from kubeclr.uri import safe_segment

log = logging.getLogger(__name__)

# What this step reads of the config: the method's sections, the kNN monitor's (eval), the multi-node
# engine and the checkpoints (kubeclr.steps).
READS: tuple[str, ...] = ("data", "model", "augment", "pretrain", "eval", "cluster", "storage.checkpoint_uri")


def scoped_checkpoints(cfg: Config, scope: str) -> str:
    """Where this run's checkpoints go: ``<checkpoint_uri>/<scope>`` ('' without a URI).

    The pipeline passes the KFP run ID, so a retried task resumes and the next
    (scheduled) run starts fresh; a sweep's trial adds its own folder below it
    (``<run ID>/trial-NN-<digest>``). Each ``/``-separated part is made one safe
    segment. The config itself is left as it is: every step of the run keeps one
    config and one digest.
    """
    uri = cfg.storage.checkpoint_uri
    parts = [safe_segment(part) for part in scope.split("/") if part.strip(" .")]
    if not (parts and uri):
        return uri
    return "/".join([uri.rstrip("/"), *parts])


def run(
    cfg: Config,
    train_path: str | Path,
    stats_path: str | Path,
    encoder_out: str | Path,
    history_out: str | Path,
    *,
    run_name: str,
    checkpoint_scope: str = "",
    gpus: int = 1,
    nodes: int = 1,
    settings: LaunchSettings | None = None,
) -> dict:
    """Pretrain on the train split and write the encoder and the history.

    Args:
        cfg: the run's config; checkpoints go to ``storage.checkpoint_uri``
            and the newest complete one is resumed.
        train_path: train split (:func:`kubeclr.data.files.save_split` format).
        stats_path: stats JSON (``mean``, ``std``).
        encoder_out: where the encoder ``state_dict`` goes (``torch.save``).
        history_out: where the history JSON goes (epochs, summary, config).
        run_name: labels the exported metrics.
        checkpoint_scope: see :func:`scoped_checkpoints`.
        gpus: GPUs of this pod (torchrun with one process each when more than one is visible),
            or of each job pod.
        nodes: more than one launches a multi-node job, whose checkpoints and
            outputs go under ``checkpoint_uri``, which must be object storage.
        settings: the pods' settings (default: those the pipeline was compiled with).

    Returns:
        The metrics.json ``pretrain`` block.

    Raises:
        DataError: unreadable split or stats file.
        UserError: a launcher-only pipeline given one node, a failed engine, or any user error from training.
    """
    settings = settings or LaunchSettings.from_env()
    if nodes < 2 and settings.launcher_only:
        raise UserError(
            f"this pipeline was compiled with --launcher (pretraining runs as a multi-node job): "
            f"set nodes to 2 or more (got {nodes}), or compile without --launcher"
        )
    if nodes > 1:
        from kubeclr.launch.multinode import check_request

        check_request(nodes, cfg.storage.checkpoint_uri)
        if not settings.launcher_only:
            log.warning(
                "nodes=%d: this pod holds its own GPUs while the %s trains (and, with a Kueue queue, their quota); "
                "compile with --launcher for multi-node runs",
                nodes,
                cfg.cluster.engine,
            )
    if nodes < 2:  # this pod trains: it must use the GPUs it was given
        require_given_gpus(gpus, cfg.pretrain.device)
    engine = choose_engine(cfg, nodes=nodes, gpus=gpus, settings=settings)
    cpu = engine.name == "in-process" and resolve_device(cfg.pretrain.device).type == "cpu"
    where = "on CPU (1 process)" if cpu else f"({nodes} node(s) x {gpus} GPU(s))"
    log.info("pretraining with the %s engine %s", engine.name, where)
    if not cpu:
        log.info("CUDA: %s", cuda_report())
    files = TrainFiles(
        train=Path(train_path),
        stats=Path(stats_path),
        encoder_out=Path(encoder_out),
        history_out=Path(history_out),
        checkpoints=scoped_checkpoints(cfg, checkpoint_scope),
    )
    return engine.train(cfg, files, run_name=run_name)
