"""A sweep's two tasks: each trial's config and scope, and the leaderboard that matches outputs to trials by content."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from kubeclr.config import config_digest, config_slice, load_config, restrict
from kubeclr.config.sweep import build_sweep
from kubeclr.errors import ConfigError, DataError
from kubeclr.report.leaderboard_page import render_html, render_markdown
from kubeclr.steps import leaderboard, reads, trial_config

BASE = load_config("smoke")


def test_a_trial_gets_its_overrides_its_own_checkpoint_folder_and_name():
    item = {"index": 3.0, "overrides": {"pretrain.temperature": 0.5, "pretrain.epochs": 2.0}}  # KFP: floats
    *slices, scope, name = trial_config.run(BASE, item, checkpoint_scope="run-uuid", run_name="nightly")
    resolved = BASE.override({"pretrain.temperature": 0.5, "pretrain.epochs": 2})
    assert slices == [config_slice(resolved, reads(task)) for task in trial_config.TRIAL_TASKS]
    assert slices[0]["pretrain"]["temperature"] == 0.5 and "gate" not in slices[0]
    assert scope == f"run-uuid/trial-03-{config_digest(resolved)[:12]}" and name == "nightly-trial-03"
    assert trial_config.run(BASE, item, checkpoint_scope="", run_name="x")[-2].startswith("trial-03-")


def test_a_trial_override_that_does_not_apply_is_one_line():
    with pytest.raises(ConfigError, match=r"^trial-01 pretrain.lrr: unknown key 'lrr'"):
        trial_config.run(BASE, {"index": 1, "overrides": {"pretrain.lrr": 1.0}}, checkpoint_scope="", run_name="x")


class FakeMetrics:
    def __init__(self):
        self.logged = {}

    def log_metric(self, key, value):
        self.logged[key] = value


def _trial_outputs(tmp_path, sweep, vals):
    """What each trial's pretrain and linear_eval write, in a shuffled order (Collected promises none)."""
    histories, results, encoders = [], [], []
    for i, (cfg, val) in enumerate(zip(sweep.configs, vals)):
        encoder = tmp_path / f"encoder-{i}.pt"
        encoder.write_bytes(f"weights of trial {i}".encode() * 10)
        encoder_sha256 = hashlib.sha256(encoder.read_bytes()).hexdigest()
        (h := tmp_path / f"history-{i}.json").write_text(
            json.dumps(
                {
                    "config_sha256": config_digest(restrict(cfg, reads("pretrain"))),  # what pretraining read
                    "encoder_sha256": encoder_sha256,
                    "summary": {"seconds": 10.0 + i},
                }
            )
        )
        (r := tmp_path / f"results-{i}.json").write_text(
            json.dumps(
                {
                    "config_sha256": config_digest(restrict(cfg, reads("linear_eval"))),
                    "encoder_sha256": encoder_sha256,
                    "val_top1": val,
                    "val_top5": 1.0,
                    "test_top1": 1.0 - val,  # test disagrees with val: the winner is chosen on val
                    "knn": {"test_top1": 0.5},
                    "seconds": 1.0,
                }
            )
        )
        histories.append(h), results.append(r), encoders.append(encoder)
    rng = random.Random(0)
    for paths in (histories, results, encoders):
        rng.shuffle(paths)
    return histories, results, encoders


def _outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    return {name: out / name for name in leaderboard.OUTPUT_FILES}


def test_the_leaderboard_ranks_on_val_and_hands_on_the_winners_encoder_bit_for_bit(tmp_path):
    sweep = build_sweep(BASE, None, ["pretrain.temperature=0.1,0.2,0.5"])
    histories, results, encoders = _trial_outputs(tmp_path, sweep, [0.6, 0.9, 0.7])
    outputs, metrics = _outputs(tmp_path), FakeMetrics()
    board = leaderboard.run(
        BASE, sweep.spec(), histories, results, encoders, outputs, run_name="sweep-1", metrics=metrics
    )
    assert board["ranking"] == [1, 2, 0] and board["winner"] == 1
    assert board["headline"]["test_top1"] == pytest.approx(0.1)
    assert outputs["encoder.pt"].read_bytes() == (tmp_path / "encoder-1.pt").read_bytes()
    saved = json.loads(outputs["leaderboard.json"].read_text())
    assert saved["metric"] == "linear_eval.val_top1" and saved["winner"] == 1
    assert [t["overrides"] for t in saved["trials"]] == sweep.overrides
    assert [t["config_sha256"] for t in saved["trials"]] == [config_digest(c) for c in sweep.configs]
    assert saved["trials"][2]["seconds"] == 13.0  # pretraining + linear evaluation
    assert {"val_top1", "test_top1", "knn_test_top1"} <= set(saved["trials"][0])
    assert metrics.logged == {
        "trials": 3.0,
        "winner_trial": 1.0,
        "winner_val_top1": 0.9,
        "winner_test_top1": pytest.approx(0.1),
        "winner_knn_test_top1": 0.5,
    }
    page = outputs["leaderboard.html"].read_text()
    for digest in (t["config_sha256"] for t in saved["trials"]):
        assert f'href="#config-{digest}"' in page and f'id="config-{digest}"' in page  # each row links its config
    assert "val top-1 vs pretrain.temperature" in page
    assert "**Winner: trial 1**" in outputs["leaderboard.md"].read_text()


def test_outputs_that_match_no_trial_are_refused(tmp_path):
    sweep = build_sweep(BASE, None, ["pretrain.temperature=0.1,0.2"])
    histories, results, encoders = _trial_outputs(tmp_path, sweep, [0.6, 0.9])
    other = build_sweep(BASE, None, ["pretrain.temperature=0.3,0.2"])  # trial 0's config ran nowhere
    with pytest.raises(DataError, match=r"trial-00: no pretraining history with its config sha256"):
        leaderboard.run(BASE, other.spec(), histories, results, encoders, _outputs(tmp_path), run_name="s")
    outputs = _outputs(tmp_path / "x")
    with pytest.raises(DataError, match="is not among the inputs"):
        leaderboard.run(
            BASE,
            sweep.spec(),
            histories,
            results,
            [e for e in encoders if e.name != "encoder-1.pt"],
            outputs,
            run_name="s",
        )
    assert not any(path.exists() for path in outputs.values())  # nothing half-written


def _board(overrides, vals, *, seeds=False):
    from kubeclr.report.leaderboard import leaderboard as rank
    from kubeclr.report.leaderboard import trial_row

    rows = [
        trial_row(i, o, {"linear_eval": {"val_top1": v, "test_top1": v}, "knn": {"test_top1": v}, "seconds": 1.0})
        for i, (o, v) in enumerate(zip(overrides, vals))
    ]
    return rank("linear_eval.val_top1", rows, seeds=seeds)


def test_the_page_escapes_every_user_string_and_loads_nothing():
    board = _board([{"model.init": "<script>alert(1)</script>"}, {"model.init": "random"}], [0.5, 0.4])
    page = render_html(board, run_name="<b>x</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page and "Content-Security-Policy" in page
    md = render_markdown(board, run_name="a|b")
    assert "<script>" not in md and "a\\|b" in md


def test_seeds_give_mean_and_std_per_setting_on_the_page():
    overrides = [{"pretrain.lr": lr, "pretrain.seed": s} for lr in (0.5, 1.0) for s in (0, 1, 2)]
    board = _board(overrides, [0.5, 0.6, 0.7, 0.8, 0.8, 0.8], seeds=True)
    page, md = render_html(board, run_name="s"), render_markdown(board, run_name="s")
    assert "Mean ± std over seeds" in page and "80.00% ± 0.00%" in page and "60.00% ± 10.00%" in page
    assert "pretrain.lr=1.0: val top-1 80.00% ± 0.00% over 3 runs" in md
    assert page.count("<img") == 2  # one chart per swept key
