"""The engine interface and the choice of engine for a pretrain step's ``nodes`` × ``gpus``."""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from kubeclr.config import Config
from kubeclr.errors import ConfigError
from kubeclr.launch.process import TrainFiles
from kubeclr.launch.settings import LaunchSettings
from kubeclr.uri import redact_uri

log = logging.getLogger(__name__)


class Engine(Protocol):
    """Trains a config on the pretrain step's files; returns the metrics.json ``pretrain`` block."""

    name: str

    def train(self, cfg: Config, files: TrainFiles, *, run_name: str) -> dict: ...


def choose_engine(cfg: Config, *, nodes: int, gpus: int, settings: LaunchSettings) -> Engine:
    """The engine for ``nodes`` × ``gpus``: a job for several nodes, torchrun for several visible GPUs."""
    if nodes > 1:
        from kubeclr.launch.multinode import MultiNode

        if cfg.data.stream and not cfg.data.source.startswith("s3://"):
            raise ConfigError(
                f"data.stream=true with {nodes} nodes: every pod reads the shards itself, so data.source must be "
                f"an s3:// prefix they can all reach (not {redact_uri(cfg.data.source)})"
            )

        return MultiNode(nodes, gpus, settings)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1 and visible > 1 and cfg.pretrain.device != "cpu":
        from kubeclr.launch.torchrun import Torchrun

        return Torchrun(min(gpus, visible))
    if gpus > 1:
        log.warning("%d GPUs requested but %d visible: training in one process", gpus, visible)
    from kubeclr.launch.inprocess import InProcess

    return InProcess()
