"""The in-process engine: train in the step's own process, on its one device."""

from __future__ import annotations

from kubeclr.config import Config
from kubeclr.core import distributed
from kubeclr.launch.process import TrainFiles, train_and_save


class InProcess:
    """Train here: one process, one device (``pretrain.device``)."""

    name = "in-process"

    def train(self, cfg: Config, files: TrainFiles, *, run_name: str) -> dict:
        ctx = distributed.init_from_env(cfg.pretrain.device)
        return train_and_save(cfg, files, run_name=run_name, device=ctx.device)
