"""The quality benchmark's own parts: the digits tarball in the CIFAR layout, the plain SimCLR's loss, the probe."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import digits
import plain_simclr
import quality_bench

from kubeclr.config import load_config
from kubeclr.core.loss import NTXentLoss
from kubeclr.data.files import load_split
from kubeclr.steps import download_split


def test_digits_tarball_splits_like_cifar_through_the_real_data_step(tmp_path):
    md5 = digits.write_digits_tarball(tmp_path / "digits.tar.gz", seed=0)
    assert md5 == digits.write_digits_tarball(tmp_path / "again.tar.gz", seed=0)  # bytes depend on the seed only
    cfg = load_config(
        "smoke",
        overrides=[
            f"data.source={tmp_path / 'digits.tar.gz'}",
            "data.md5=none",
            "data.train_limit=0",
            "data.val_limit=0",
            "data.test_limit=0",
        ],
    )
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    facts = download_split.run(cfg, out["train"], out["val"], out["test"])
    assert (facts["train_size"], facts["val_size"], facts["test_size"]) == (1120, 280, 397)
    assert facts["synthetic"] is False and facts["class_names"] == [str(d) for d in range(10)]
    ours = {s: load_split(p) for s, p in out.items()}
    bench = quality_bench.digit_splits(0)  # what the baselines train and test on
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(ours[split].images, bench[split][0])
        np.testing.assert_array_equal(ours[split].labels, bench[split][1])
    images = ours["train"].images
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert (images[:, 0] == images[:, 1]).all() and 150 <= images.max() <= 255  # grey, varied brightness
    assert set(np.bincount(ours["train"].labels)) <= set(range(100, 125))  # roughly balanced


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_plain_simclr_loss_equals_ours(tau):
    """The baseline and the product compute the same NT-Xent, so a gap between them is in the recipe."""
    z1, z2 = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)).chunk(2)
    ours = NTXentLoss(tau)(z1, z2)
    theirs = plain_simclr.nt_xent(torch.cat([z1, z2]), tau)
    torch.testing.assert_close(ours, theirs)


def test_plain_resnet_has_the_width_and_feature_dim_of_ours():
    from kubeclr.core.model import build_encoder

    ours = build_encoder(load_config("smoke", overrides=["model.width=8"]).model)
    theirs = plain_simclr.ResNet18(width=8)
    assert theirs.dim == ours.feature_dim
    n = sum(p.numel() for p in theirs.parameters())
    assert n == sum(p.numel() for p in ours.parameters())  # the same ResNet-18, written apart
    assert theirs(torch.zeros(2, 3, 32, 32)).shape == (2, ours.feature_dim)


def test_probe_scores_separable_features_perfectly_and_noise_at_chance():
    rng = np.random.default_rng(0)
    y = {s: np.arange(n) % 10 for s, n in (("train", 200), ("val", 50), ("test", 100))}
    centres = rng.normal(size=(10, 16)) * 10
    f = {s: centres[y[s]] + rng.normal(size=(len(y[s]), 16)) for s in y}
    assert quality_bench.linear_probe(f, y) == 1.0 and quality_bench.knn_probe(f, y) == 1.0
    noise = {s: rng.normal(size=(len(y[s]), 16)) for s in y}
    assert quality_bench.linear_probe(noise, y) < 0.3 and quality_bench.knn_probe(noise, y) < 0.3


def test_plain_simclr_is_written_apart_from_kubeclr():
    import ast

    tree = ast.parse(Path(plain_simclr.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and not [m for m in imported if m.split(".")[0] == "kubeclr"]


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lr=fast"], "lr takes a float, not 'fast'"),
        (["decay_all=maybe"], "decay_all takes a bool"),
        (["schedule=step"], "schedule 'step': one of onecycle, warmup-cosine"),
        (["epochs=10"], "the benchmark sets epochs for every method; use --epochs"),
        (["momentun=0.9"], "momentun=0.9: unknown field"),
    ],
)
def test_plain_recipes_are_checked_before_anything_runs(sets, message):
    with pytest.raises(SystemExit, match=message):
        quality_bench.plain_fields(sets)
    assert quality_bench.plain_fields(["decay_all=false", "lr=0.5"]) == {"decay_all": False, "lr": 0.5}


def test_a_bad_variant_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setattr(quality_bench, "ARGS", type("A", (), {"preset": "smoke"}), raising=False)
    monkeypatch.setattr(quality_bench, "COMMON_SETS", [], raising=False)
    quality_bench.check_variants([("ok", ["pretrain.temperature=0.2"])])
    with pytest.raises(SystemExit, match="--variant typo: .*pretrain.temprature"):
        quality_bench.check_variants([("typo", ["pretrain.temprature=0.2"])])


def test_a_variant_splits_at_the_commas_between_settings_not_inside_a_list():
    name, sets = quality_bench.parse_variant("crop=augment.crop_scale=[0.2,1.0],pretrain.lr=2.4")
    assert (name, sets) == ("crop", ["augment.crop_scale=[0.2,1.0]", "pretrain.lr=2.4"])
    assert quality_bench.parse_variant("base=") == ("base", [])
    with pytest.raises(SystemExit, match="expected NAME=key=value"):
        quality_bench.parse_variant("no-settings")


def test_smoke_shows_learning_per_epoch():
    # issue 13: the kNN monitor is on in smoke, so the report shows learning epoch by epoch
    assert load_config("smoke").pretrain.knn_every == 1


@pytest.mark.parametrize("schedule", ["onecycle", "warmup-cosine"])
def test_plain_simclr_trains_with_either_schedule_and_decay_rule(schedule):
    images = np.random.default_rng(0).integers(0, 256, size=(32, 3, 32, 32), dtype=np.uint8)
    recipe = plain_simclr.Recipe(epochs=1, batch_size=16, width=4, schedule=schedule, decay_all=False)
    encoder, losses = plain_simclr.train(images, recipe, log=lambda _: None)
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert plain_simclr.embed(encoder, images[:5], [0.5] * 3, [0.25] * 3).shape == (5, encoder.dim)


def test_smoke_demo_epochs_summary_counts_healthy_seeds_and_the_smallest_margin():
    import smoke_demo_epochs

    def run(epochs, seed, health, init, final):
        return {
            "epochs": epochs,
            "seed": seed,
            "health": health,
            "knn_monitor_init": init,
            "knn_monitor_final": final,
            "pretrain_seconds": 9.0 + seed,
        }

    runs = [
        run(6, 0, "below-random-init", 0.76, 0.745),
        run(6, 1, "healthy", 0.62, 0.80),
        run(12, 0, "healthy", 0.76, 0.925),
        run(12, 1, "healthy", 0.62, None),  # monitor off: no margin, still counted
    ]
    summary = smoke_demo_epochs.summarise(runs)
    assert summary["6"] == {
        "healthy": 1,
        "runs": 2,
        "min_knn_margin": pytest.approx(-0.015),
        "pretrain_seconds_max": 10.0,
    }
    assert summary["12"]["healthy"] == 2 and summary["12"]["min_knn_margin"] == pytest.approx(0.165)
    assert list(summary) == ["6", "12"]  # numeric order, not string order


def test_a_benchmark_run_that_fails_stops_the_sweep_naming_its_command_and_error(tmp_path):
    import cli_run

    out = tmp_path / "typo-s0"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")  # a rerun replaces the folder
    with pytest.raises(SystemExit) as exc:
        cli_run.run_local("smoke", ["pretrain.temprature=0.2"], out)
    message = str(exc.value)
    assert message.startswith("run failed (") and "--set pretrain.temprature=0.2" in message
    assert "temprature" in message.split("):", 1)[1]  # the CLI's own error, not only the command
    assert not (out / "stale.txt").exists()
