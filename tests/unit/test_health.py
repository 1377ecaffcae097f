"""The "not learning" check: the rule by hand, and real runs that do and do not learn."""

from __future__ import annotations

import logging
import math

import pytest
from test_train import CPU, MEAN, STD, structured_images, tiny_config

from kubeclr.core import train
from kubeclr.core.health import chance_loss, check_epoch, training_health

pytestmark = pytest.mark.usefixtures("one_thread")


def _health(losses, epochs=8, batch=16, lr_scaling="linear", optimizer="lars"):
    return training_health(
        losses, epochs=epochs, batch_size=batch, peak_lr=0.15, lr_scaling=lr_scaling, optimizer=optimizer
    )


def test_chance_is_log_of_the_other_views():
    assert chance_loss(128) == pytest.approx(math.log(255))
    assert chance_loss(2) == pytest.approx(math.log(3))


@pytest.mark.parametrize("epochs, first", [(1, 1), (3, 1), (4, 1), (5, 2), (8, 2), (30, 8), (1000, 250)])
def test_judged_after_a_quarter_of_the_schedule(epochs, first):
    assert check_epoch(epochs) == first


@pytest.mark.parametrize("epochs, warmup, first", [(4, 1, 2), (4, 0.5, 1), (30, 3, 8), (30, 10, 11), (8, 20, 8)])
def test_never_judged_inside_the_warmup(epochs, warmup, first):
    assert check_epoch(epochs, warmup) == first


def test_the_rule_by_hand():
    chance = math.log(31)  # batch 16
    assert _health([chance])["status"] == "too-early"  # epoch 1 of 8: judged at 2
    assert _health([chance, chance * 0.995])["status"] == "not-learning"  # 0.5% below chance
    assert _health([chance, chance * 0.991])["status"] == "not-learning"  # 0.9%: still within 1%
    assert _health([chance, chance * 0.985])["status"] == "ok"  # 1.5% below chance
    assert _health([chance, chance * 0.98, chance])["status"] == "not-learning"  # the latest epoch counts
    bad = _health([chance, chance])
    assert bad["chance_loss"] == pytest.approx(chance) and bad["epoch"] == 2
    assert "not learning" in bad["message"] and "lr_scaling=linear" in bad["message"]
    assert "0.15" in bad["message"] and "sqrt" in bad["message"]


def test_the_advice_fits_the_optimiser():
    chance = math.log(31)
    sgd = _health([chance, chance], optimizer="sgd")["message"]
    assert "with sgd" in sgd and "raise pretrain.lr" in sgd and "App. B.1" not in sgd
    lars_sqrt = _health([chance, chance], lr_scaling="sqrt")["message"]
    assert "raise pretrain.lr" in lars_sqrt and "App. B.1" not in lars_sqrt


def test_a_slow_start_is_named_in_the_final_verdict():
    # within 1% of chance at the check epoch (2) and at 3, learning from 4: the log warned at 2,
    # so the final verdict (metrics.json, the report) must not read as if nothing happened
    chance = math.log(31)
    late = _health([chance, chance, chance * 0.995, chance * 0.9])
    assert late["status"] == "ok"
    assert "until epoch 3 of 8" in late["message"] and "slow start" in late["message"]
    assert "slow start" not in _health([chance, chance * 0.9, chance * 0.8])["message"]


def test_warning_fires_on_a_run_with_a_tiny_learning_rate(caplog):
    images, _ = structured_images(seed=3)
    cfg = tiny_config(**{"pretrain.epochs": 4, "pretrain.lr": 1e-6, "pretrain.seed": 3})
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.train"):
        result = train.train_simclr(cfg, images, MEAN, STD, device=CPU)
    assert result.summary["health"]["status"] == "not-learning"
    warnings = [r.getMessage() for r in caplog.records if "not learning" in r.getMessage()]
    assert len(warnings) == 1  # said once, at the quarter mark, not every epoch
    assert "peak lr 1e-06" in warnings[0]


def test_no_warning_on_a_healthy_run(caplog):
    images, _ = structured_images(seed=3)
    cfg = tiny_config(**{"pretrain.epochs": 4, "pretrain.seed": 3})
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.train"):
        result = train.train_simclr(cfg, images, MEAN, STD, device=CPU)
    assert result.summary["health"]["status"] == "ok", result.summary["health"]
    assert not [r for r in caplog.records if "not learning" in r.getMessage()]
