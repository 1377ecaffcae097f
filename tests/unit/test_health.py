"""The health checks: "not learning" and "below random init", by hand and on real runs that do and do not learn."""

from __future__ import annotations

import logging
import math

import pytest
from test_train import CPU, MEAN, STD, structured_images, tiny_config

from kubeclr.config import Config
from kubeclr.core import train
from kubeclr.core.health import (
    against_collapse,
    against_init,
    chance_loss,
    check_epoch,
    pretrain_health,
    recipe_causes,
    training_health,
)

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
    assert _health([chance, chance * 0.985])["status"] == "healthy"  # 1.5% below chance
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
    assert late["status"] == "slow-start"
    assert "until epoch 3 of 8" in late["message"] and "slow start" in late["message"]
    assert "slow start" not in _health([chance, chance * 0.9, chance * 0.8])["message"]


def test_the_message_words_the_rule_as_computed():
    # the rule is loss < 0.99 x chance: a loss 7.6% ABOVE chance fails it, and must not read as "within 1%"
    chance = math.log(31)
    above = _health([chance, 1.076 * chance])
    assert above["status"] == "not-learning"
    assert f"the loss {1.076 * chance:.3f} is 7.6% above chance log(2B-1) = {chance:.3f}" in above["message"]
    assert "learning means more than 1% below it" in above["message"] and "within" not in above["message"]
    near = _health([chance, 0.995 * chance])["message"]
    assert "is 0.5% below chance" in near and "within" not in near
    assert "is 10.0% below chance" in _health([chance, 0.9 * chance])["message"]


def _finished(**health_overrides):
    chance = math.log(31)
    return {**_health([chance, 0.8 * chance]), **health_overrides}  # a loss that fell: healthy


def test_below_random_init_by_hand():
    healthy = _finished()
    assert healthy["status"] == "healthy"
    assert against_init(healthy, knn_init=0.40, knn_final=0.41)["status"] == "healthy"  # above: learnt something
    for final in (0.40, 0.30):  # equal is not above
        below = against_init(healthy, knn_init=0.40, knn_final=final, causes=["weak colour"])
        assert below["status"] == "below-random-init"
        assert below["knn_top1_init"] == 0.40 and below["knn_top1_final"] == final
        assert f"final top-1 {final:.3f} is not above 0.400" in below["message"] and "weak colour" in below["message"]
    assert against_init(healthy, knn_init=1.0, knn_final=1.0)["status"] == "healthy"  # nothing to beat
    assert against_init(healthy, knn_init=None, knn_final=0.1) == healthy  # monitor off: not judged
    # the loss never moved: the learning rate's advice, not the recipe's
    stuck = against_init(_health([3.4, 3.4]), knn_init=0.4, knn_final=0.3, causes=["weak colour"])
    assert stuck["status"] == "below-random-init"
    assert "not learning" in stuck["message"] and "peak lr 0.15" in stuck["message"]
    assert "weak colour" not in stuck["message"]


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"augment.color_strength": 0.2}, "augment.color_strength=0.2"),
        ({"augment.color_p": 0.2}, "color_p=0.2"),
        ({"augment.crop_scale": [0.8, 1.0]}, "augment.crop_scale"),
        ({"pretrain.temperature": 1.0}, "pretrain.temperature=1"),
        ({"pretrain.temperature": 0.02}, "pretrain.temperature=0.02"),
        ({"pretrain.weight_decay": 1e-3}, "pretrain.weight_decay=0.001"),
        ({"model.head": "linear"}, "model.head=linear"),
        ({"pretrain.lr": 10.0}, "peak lr"),
    ],
)
def test_the_below_init_advice_fits_the_recipe(overrides, named):
    causes = recipe_causes(Config().override(overrides))
    assert len(causes) == 1 and named in causes[0], causes
    assert not any("raise pretrain.lr" in c for c in causes)


def test_a_standard_recipe_gets_no_recipe_blame():
    assert recipe_causes(Config()) == []  # the paper's CIFAR settings: nothing to point at
    message = against_init(_finished(), knn_init=0.4, knn_final=0.3)["message"]
    assert "train longer" in message and "raise pretrain.lr" not in message


def test_pretrain_health_judges_the_baseline_after_the_last_epoch_only():
    cfg = tiny_config(**{"pretrain.epochs": 3, "pretrain.warmup_epochs": 0})
    chance = math.log(31)
    history = [
        {"epoch": 1, "loss": 0.9 * chance, "knn_top1_init": 0.5, "knn_top1": 0.4},
        {"epoch": 2, "loss": 0.8 * chance, "knn_top1": 0.45},
        {"epoch": 3, "loss": 0.7 * chance, "knn_top1": 0.5},
    ]
    assert pretrain_health(history[:2], cfg, steps_per_epoch=4)["status"] == "healthy"  # mid-run: not judged
    done = pretrain_health(history, cfg, steps_per_epoch=4)
    assert done["status"] == "below-random-init" and done["knn_top1_final"] == 0.5
    assert "augment.color_strength=0.2" in done["message"]  # tiny_config's weak colour distortion
    history[-1]["knn_top1"] = 0.55
    assert pretrain_health(history, cfg, steps_per_epoch=4)["status"] == "healthy"


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
    assert result.summary["health"]["status"] == "healthy", result.summary["health"]
    assert not [r for r in caplog.records if "not learning" in r.getMessage()]


class Scripted:
    """A monitor returning fixed values in turn (epoch 0 first): the kNN curve of a run, chosen by the test."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self, encoder):
        return self.values.pop(0)


@pytest.mark.parametrize(
    "curve, status", [((0.5, 0.45, 0.40, 0.35), "below-random-init"), ((0.3, 0.4, 0.5, 0.6), "healthy")]
)
def test_a_run_that_ends_below_its_own_epoch_zero_is_flagged_once(caplog, curve, status):
    images, _ = structured_images(seed=3)
    cfg = tiny_config(**{"pretrain.epochs": 3, "pretrain.seed": 3, "pretrain.knn_every": 1})
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.train"):
        result = train.train_simclr(cfg, images, MEAN, STD, device=CPU, monitor=Scripted(*curve))
    health = result.summary["health"]
    assert result.summary["knn_top1_init"] == curve[0] and result.history[0]["knn_top1_init"] == curve[0]
    assert [r["knn_top1"] for r in result.history] == list(curve[1:])
    assert health["status"] == status, health
    warnings = [r.getMessage() for r in caplog.records if "below random init" in r.getMessage()]
    assert len(warnings) == (status == "below-random-init")  # said once, after the last epoch
    if warnings:
        assert warnings[0] == health["message"] and "0.350 is not above 0.500" in warnings[0]


HEALTHY = {"status": "healthy", "message": "loss fell", "loss": 3.0, "chance_loss": 4.1}


@pytest.mark.parametrize(
    "curve, status, said",
    [
        ((12.6, 20.0, 30.0, 1.5), "collapsing", "under 5.1 (2% of the 256"),  # an end near one direction
        ((12.6, 40.0, 30.0, 20.0, 15.0), "collapsing", "falling at each of the last 4 measurements from a peak of 40"),
        ((12.6, 40.0, 30.0, 35.0, 15.0), "healthy", None),  # fell, but not steadily
        ((12.6, 40.0, 39.0, 38.0, 37.0), "healthy", None),  # steadily, but by little
        ((12.6, 20.0, 30.0, 28.0), "healthy", None),
    ],
)
def test_collapse_by_hand(curve, status, said):
    out = against_collapse(HEALTHY, curve, 256)
    assert out["status"] == status and out["rankme_final"] == curve[-1]
    if said:
        assert said in out["message"] and "temperature" in out["message"]
    else:
        assert out["message"] == HEALTHY["message"]


def test_collapse_keeps_a_worse_verdict_and_needs_a_curve():
    worse = {**HEALTHY, "status": "below-random-init", "message": "below random init"}
    assert against_collapse(worse, (12.0, 1.1), 256)["status"] == "below-random-init"
    assert against_collapse(HEALTHY, (), 256) == HEALTHY  # the monitor was off
    assert against_collapse(HEALTHY, (1.5, 1.9), 64)["status"] == "collapsing"  # floor 2 for small dimensions
    assert against_collapse(HEALTHY, (1.0, 1.0), 3) == HEALTHY  # RankMe can reach 3 at most: too little to judge


def test_a_run_whose_monitor_rank_collapses_is_flagged():
    images, _ = structured_images(seed=3)
    cfg = tiny_config(**{"pretrain.epochs": 3, "pretrain.seed": 3, "pretrain.knn_every": 1})
    curve = [{"knn_top1": 0.3 + 0.1 * i, "rankme": r} for i, r in enumerate((12.0, 9.0, 3.0, 1.2))]
    result = train.train_simclr(cfg, images, MEAN, STD, device=CPU, monitor=Scripted(*curve))
    assert [r["rankme"] for r in result.history] == [9.0, 3.0, 1.2] and result.summary["rankme_init"] == 12.0
    assert result.summary["health"]["status"] == "collapsing", result.summary["health"]


def test_the_report_and_the_gate_know_the_same_verdicts():
    from kubeclr.core.health import STATUSES, WARN_STATUSES
    from kubeclr.report.gate import HEALTH_FAILURES
    from kubeclr.report.render import WARN_HEALTH

    assert set(WARN_HEALTH) == WARN_STATUSES  # named twice so the report imports no torch
    assert set(HEALTH_FAILURES) <= WARN_STATUSES <= set(STATUSES)
