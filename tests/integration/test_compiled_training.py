"""The compiled bf16 step on CPU: no graph break, no recompile, loss falls, compile cost reported and cached.

Inductor really compiles here (C++ on CPU), which costs tens of seconds on a
2-core runner: one run, several checks. The same code path is what the
``fast`` preset runs on a GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kubeclr.core import compiled, train
from kubeclr.storage.store import LocalStore
from tests.unit.test_train import MEAN, STD, structured_images, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]
CPU = torch.device("cpu")


def test_compiled_bf16_training_on_cpu_has_no_graph_break_or_recompile_and_learns(tmp_path, caplog):
    cfg = tiny_config(
        **{"pretrain.compile": True, "pretrain.precision": "bf16", "pretrain.epochs": 4, "pretrain.lr": 0.5}
    )
    images, _ = structured_images(n=64)
    store = LocalStore(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store)
    stats = result.summary["compile"]
    assert stats == {"compiled": True, "graphs": stats["graphs"], "graph_breaks": 0, "recompiles": 0, "fallback": None}
    assert stats["graphs"] >= 1
    assert "recompiled" not in caplog.text and "graph break" not in caplog.text
    losses = [r["loss"] for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert result.summary["precision"] == "bf16"
    assert result.summary["compile_seconds"] > 0 and result.summary["first_epoch_seconds"] > 0
    # the compile cache sits next to the checkpoints, for a retried or resumed task
    assert store.exists(compiled.CACHE_KEY.format(tag=compiled.cache_tag(CPU)))
    # opted out (a checkpoint prefix others can write): no cache is saved
    other = LocalStore(tmp_path / "no-cache")
    train.train_simclr(
        cfg.override({"pretrain.compile_cache": False, "pretrain.epochs": 1}),
        images,
        MEAN,
        STD,
        device=CPU,
        store=other,
    )
    assert other.exists("ckpt-000001/MANIFEST.json")
    assert not other.exists(compiled.CACHE_KEY.format(tag=compiled.cache_tag(CPU)))
