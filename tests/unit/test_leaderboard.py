"""The sweep leaderboard (issue 18, first part): ranked on validation, never on test; seeds averaged."""

from __future__ import annotations

import pytest

from kubeclr.report.leaderboard import leaderboard, trial_row


def _m(val, test, knn=0.5, digest="d"):
    return {
        "linear_eval": {"val_top1": val, "val_top5": 1.0, "test_top1": test},
        "knn": {"test_top1": knn},
        "config_sha256": digest,
        "timings": {"pretrain": 10.0, "report": 1.0},
    }


def test_ranked_on_validation_even_when_test_disagrees():
    rows = [
        trial_row(0, {"pretrain.lr": 0.5}, _m(0.80, 0.95)),  # best on test, not on val
        trial_row(1, {"pretrain.lr": 1.0}, _m(0.90, 0.70)),
        trial_row(2, {"pretrain.lr": 1.5}, _m(0.85, 0.75)),
    ]
    board = leaderboard("linear_eval.val_top1", rows)
    assert board["winner"] == 1 and board["ranking"] == [1, 2, 0]
    assert board["headline"] == {
        "test_top1": 0.70,
        "knn_test_top1": 0.5,
        "val_top1": 0.90,
        "chosen_on": "linear_eval.val_top1",
    }
    t = board["trials"][0]
    assert t["overrides"] == {"pretrain.lr": 0.5} and t["config_sha256"] == "d" and t["seconds"] == 11.0
    assert {"val_top1", "test_top1", "knn_test_top1"} <= set(t)


def test_ties_go_to_the_earlier_trial():
    rows = [trial_row(i, {"pretrain.lr": i}, _m(0.8, 0.1 * i)) for i in range(3)]
    assert leaderboard("linear_eval.val_top1", rows)["ranking"] == [0, 1, 2]


def test_seeds_give_mean_and_std_per_setting_and_rank_by_the_mean():
    vals = {(0.5, 0): 0.80, (0.5, 1): 0.82, (1.0, 0): 0.95, (1.0, 1): 0.60}  # lr 1.0: one lucky seed
    rows = [
        trial_row(i, {"pretrain.lr": lr, "pretrain.seed": seed}, _m(v, v - 0.05))
        for i, ((lr, seed), v) in enumerate(vals.items())
    ]
    board = leaderboard("linear_eval.val_top1", rows, seeds=True)
    best, other = board["groups"]
    assert best["overrides"] == {"pretrain.lr": 0.5} and best["runs"] == 2
    assert best["val_top1"]["mean"] == pytest.approx(0.81) and best["val_top1"]["std"] == pytest.approx(
        0.01414, abs=1e-4
    )
    assert other["val_top1"]["mean"] == pytest.approx(0.775)
    assert board["winner"] == 1  # the best seed of the best-on-average setting, not the lucky 0.95


def test_no_trial_with_the_metric_is_an_error():
    with pytest.raises(ValueError, match="no trial reported linear_eval.val_top1"):
        leaderboard("linear_eval.val_top1", [trial_row(0, {}, {"linear_eval": {}, "knn": {}})])
