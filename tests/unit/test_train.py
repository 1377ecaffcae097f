"""Pretraining loop and step: exact resume, learning, outputs (CPU, tiny data)."""

from __future__ import annotations

import functools
import io
import json
import logging
import shutil
import threading

import numpy as np
import pytest
import torch
from sync_fixtures import check_counter, host_reads

from kubeclr.atomic import write_json
from kubeclr.config import Config, config_digest
from kubeclr.core import checkpoint, train
from kubeclr.core.augment import SimCLRAugment, color_jitter, paired_views
from kubeclr.core.model import build_encoder
from kubeclr.core.train import Callback, Prefetch, batch_plan, view_batches
from kubeclr.data.files import Split, save_split
from kubeclr.errors import ConfigError, UserError
from kubeclr.steps import pretrain as step
from kubeclr.storage.store import LocalStore

CPU = torch.device("cpu")
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(**overrides) -> Config:
    base = {
        "model.width": 4,
        "model.proj_dim": 16,
        "augment.size": 16,
        "augment.crop_scale": [0.5, 1.0],
        "augment.color_strength": 0.2,
        "pretrain.batch_size": 16,
        "pretrain.epochs": 3,
        "pretrain.device": "cpu",
        "pretrain.warmup_epochs": 1,
        "pretrain.optimizer": "lars",
        "pretrain.lr": 1.0,
        "pretrain.lr_scaling": "none",
        "pretrain.checkpoint_every": 1,
    }
    base.update(overrides)
    return Config().override(base)


def structured_images(n: int = 64, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes: a class colour modulated by class-specific stripes, plus noise. uint8 (n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(0, 256, (4, 3, 1, 1), generator=g).float()
    labels = torch.arange(n) % 4
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    stripes = ((xx + yy * (labels.view(-1, 1, 1) + 1)) % 4 < 2).float()  # (n, size, size)
    images = colours[labels] * (0.5 + 0.5 * stripes[:, None]) + 10 * torch.randn(n, 3, size, size, generator=g)
    return images.clamp(0, 255).to(torch.uint8), labels


class Interrupt(Exception):
    pass


class InterruptAfter(Callback):
    """Simulates a killed pod: raises at the end of ``epoch`` (after its checkpoint was written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, record):
        if record["epoch"] == self.epoch:
            raise Interrupt


class Recorder(Callback):
    def __init__(self) -> None:
        self.start, self.epochs, self.steps, self.summary = None, [], 0, None

    def on_train_start(self, info):
        self.start = dict(info)

    def on_step_end(self, step, seconds):
        self.steps += 1

    def on_epoch_end(self, record):
        self.epochs.append(record["epoch"])

    def on_train_end(self, summary):
        self.summary = dict(summary)


def test_interrupted_then_resumed_run_is_bitwise_equal(tmp_path):
    cfg = tiny_config()
    images, _ = structured_images()
    full = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=LocalStore(tmp_path / "a"))

    store = LocalStore(tmp_path / "b")
    with pytest.raises(Interrupt):
        train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, callbacks=InterruptAfter(2))
    rec = Recorder()
    resumed = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, callbacks=rec)

    assert rec.start["start_epoch"] == 2 and rec.epochs == [3]  # it really resumed, it did not start over
    assert rec.steps == 4  # 64 images / batch 16, one epoch
    want, got = full.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history]


# a CUDA generator's state is its Philox seed and offset, 8 bytes each (a CPU one is 5056 bytes)
CUDA_STATE = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)


@pytest.mark.parametrize("recorded", [True, False], ids=["devices-recorded", "older-checkpoint"])
def test_checkpoint_from_a_cuda_run_resumes_on_cpu_with_the_augmentation_rng_reseeded(tmp_path, caplog, recorded):
    cfg = tiny_config(**{"pretrain.epochs": 2})
    images, _ = structured_images()
    store = LocalStore(tmp_path / "ckpt")
    with pytest.raises(Interrupt):
        train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, callbacks=InterruptAfter(1))
    # rewrite its RNG states as a run on two GPUs writes them: the augmentation generator lived on cuda:0
    epoch, state = checkpoint.load_latest(store)
    rng = state["rng"][0]
    rng["generators"]["augment"] = CUDA_STATE
    if recorded:
        rng["devices"]["augment"] = "cuda:0"
    else:  # written before the devices were recorded, with every default CUDA generator
        del rng["devices"]
        rng["cuda"] = [CUDA_STATE, CUDA_STATE]
    checkpoint.save_checkpoint(store, epoch, state)

    runs = []
    for copy in ("a", "b"):
        shutil.copytree(tmp_path / "ckpt", tmp_path / copy)
        rec = Recorder()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kubeclr"):
            runs.append(
                train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=LocalStore(tmp_path / copy), callbacks=rec)
            )
        assert rec.start["start_epoch"] == 1 and rec.epochs == [2]  # resumed, not started over
        reseeded = [r.getMessage() for r in caplog.records if "re-seeded" in r.getMessage()]
        assert len(reseeded) == 1, reseeded
        assert "augment" in reseeded[0] and ("cuda:0" if recorded else "16 bytes") in reseeded[0]
    # re-seeded from pretrain.seed, so still deterministic: both resumes agree bitwise
    assert [r["loss"] for r in runs[0].history] == [r["loss"] for r in runs[1].history]
    first, second = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert all(torch.equal(v, second[k]) for k, v in first.items())


def test_host_reads_do_not_grow_with_the_steps():
    """No value is read back to the host per step (on CUDA each read is a sync), only the epoch's loss."""
    check_counter()
    reads = {}
    for n, epochs in [(32, 1), (96, 1), (32, 3), (96, 3)]:  # 2 and 6 steps per epoch
        images, _ = structured_images(n=n)
        cfg = tiny_config(**{"pretrain.epochs": epochs})
        reads[n, epochs] = host_reads(functools.partial(train.train_simclr, cfg, images, MEAN, STD, device=CPU))
    assert reads[32, 1] == reads[96, 1] and reads[32, 3] == reads[96, 3], reads
    assert reads[96, 3] <= 2 * 3, reads  # at most 2 per epoch
    # on CPU the views are made on the prefetch thread, which the (thread-local) counter does not see
    aug = SimCLRAugment(tiny_config().augment, MEAN, STD)
    assert host_reads(functools.partial(paired_views, aug, images[:16], torch.Generator().manual_seed(0))) == 0
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert host_reads(functools.partial(color_jitter, x, 0.5, 1.0, select=False)) == 0  # the CUDA path


def test_short_run_lowers_the_loss():
    images, _ = structured_images(seed=2)
    rec = Recorder()
    result = train.train_simclr(
        tiny_config(**{"pretrain.epochs": 12, "pretrain.seed": 2}), images, MEAN, STD, device=CPU, callbacks=rec
    )
    losses = [r["loss"] for r in result.history]
    assert [r["epoch"] for r in result.history] == list(range(1, 13))
    assert losses[0] == pytest.approx(np.log(2 * 16 - 1), abs=0.3)  # chance level: log(2N-1)
    assert np.mean(losses[:3]) - np.mean(losses[-3:]) > 0.1
    assert rec.summary == result.summary
    assert result.summary["final_loss"] == losses[-1] and result.summary["epochs"] == 12
    assert set(result.summary) >= {
        "arch",
        "epochs",
        "batch_size",
        "final_loss",
        "seconds",
        "images_per_second",
        "device",
    }


def test_finished_checkpoint_is_not_trained_again(tmp_path):
    cfg = tiny_config(**{"pretrain.epochs": 1})
    images, _ = structured_images()
    first = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=LocalStore(tmp_path))
    rec = Recorder()
    again = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=LocalStore(tmp_path), callbacks=rec)
    assert rec.steps == 0 and rec.start["start_epoch"] == 1
    assert again.history == first.history
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in first.model.state_dict().items())


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    images, _ = structured_images()
    train.train_simclr(tiny_config(**{"pretrain.epochs": 1}), images, MEAN, STD, device=CPU, store=LocalStore(tmp_path))
    with pytest.raises(UserError, match="different model config"):
        train.train_simclr(tiny_config(**{"model.width": 8}), images, MEAN, STD, device=CPU, store=LocalStore(tmp_path))


def test_knn_monitor_is_recorded():
    from kubeclr.eval.knn import knn_monitor

    images, labels = structured_images()
    cfg = tiny_config(**{"pretrain.epochs": 2, "pretrain.knn_every": 2, "eval.knn_k": 5})
    monitor, facts = knn_monitor(cfg.eval, images.numpy(), labels.numpy(), 4, MEAN, STD, seed=cfg.data.seed, device=CPU)
    result = train.train_simclr(cfg, images, MEAN, STD, device=CPU, monitor=monitor)
    assert "knn_top1" not in result.history[0]
    assert 0.0 <= result.history[1]["knn_top1"] <= 1.0
    # the monitor uses the run's eval section (it once ran with the default k = 200 instead)
    assert facts == {"k": 5, "temperature": cfg.eval.knn_temperature, "bank": 52, "queries": 12}
    # epoch 0: the same monitor on this run's encoder before the first step, the baseline the run must beat
    init = result.history[0]["knn_top1_init"]
    assert 0.0 <= init <= 1.0 and result.summary["knn_top1_init"] == init
    assert all("knn_top1_init" not in r for r in result.history[1:])
    train._seed_everything(cfg.pretrain.seed)  # the encoder the run started from: the monitor scores it alike
    again = monitor(train.build_model(cfg.model).encoder)
    assert again["knn_top1"] == pytest.approx(init)
    # beside it, the effective rank of the queries' features: at most min(queries, feature dimension)
    assert again["rankme"] == pytest.approx(result.history[0]["rankme_init"]) == result.summary["rankme_init"]
    assert 1.0 <= result.history[1]["rankme"] <= min(12, train.build_model(cfg.model).encoder.feature_dim)


class CountingMonitor:
    """A monitor whose value is the number of times it was called (0.1, 0.2, …), recording each call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, encoder) -> float:
        assert encoder.training  # the loop hands over the encoder in train mode
        self.calls += 1
        return 0.1 * self.calls


def test_epoch_zero_monitor_is_kept_not_recomputed_on_resume(tmp_path):
    images, _ = structured_images()
    cfg = tiny_config(**{"pretrain.epochs": 3, "pretrain.knn_every": 1})
    store = LocalStore(tmp_path)
    first = CountingMonitor()
    with pytest.raises(Interrupt):
        train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, monitor=first, callbacks=InterruptAfter(1))
    assert first.calls == 2  # epoch 0, then epoch 1
    again = CountingMonitor()
    result = train.train_simclr(cfg, images, MEAN, STD, device=CPU, store=store, monitor=again)
    assert again.calls == 2  # epochs 2 and 3 only: epoch 0 comes from the checkpoint's history
    assert result.history[0]["knn_top1_init"] == pytest.approx(0.1) and result.summary["knn_top1_init"] == 0.1
    assert [r["knn_top1"] for r in result.history] == pytest.approx([0.2, 0.1, 0.2])
    health = result.summary["health"]  # the kNN verdict reads the kept epoch 0: 0.2 > 0.1, above it
    assert (health["knn_top1_init"], health["knn_top1_final"]) == pytest.approx((0.1, 0.2))
    # not "healthy": whether 12 steps of this tiny run take the loss 1% below chance (else
    # "not-learning", checked first) depends on the CPU's float kernels; that rule has its own tests
    assert health["status"] != "below-random-init"
    off = train.train_simclr(tiny_config(**{"pretrain.epochs": 1}), images, MEAN, STD, device=CPU, monitor=again)
    assert off.summary["knn_top1_init"] is None and again.calls == 2  # knn_every=0: the monitor never runs


@pytest.mark.parametrize("batch,world,n,message", [(16, 3, 64, "divisible"), (128, 1, 64, "exceeds")])
def test_batch_plan_rejects_impossible_batches(batch, world, n, message):
    with pytest.raises(ConfigError, match=message):
        batch_plan(batch, world, n)


def test_batch_plan_drops_the_incomplete_batch():
    assert batch_plan(16, 2, 70) == (8, 4)


def _write_inputs(tmp_path):
    images, labels = structured_images(n=32)
    split = Split(
        images.numpy(),
        labels.numpy(),
        tuple("abcd"),
        {"source": "test", "synthetic": True, "split": "train", "seconds": 0.0, "md5": None},
    )
    save_split(tmp_path / "train.npz", split)
    write_json(tmp_path / "stats.json", {"mean": MEAN, "std": STD, "count": 32, "seconds": 0.0, "synthetic": True})
    return tmp_path / "train.npz", tmp_path / "stats.json"


def test_step_writes_contract_outputs_and_honours_the_checkpoint_uri(tmp_path):
    train_path, stats_path = _write_inputs(tmp_path)
    cfg = tiny_config(**{"pretrain.epochs": 2})
    ckpt_uri = (tmp_path / "ckpt").as_uri()
    cfg = cfg.override({"storage.checkpoint_uri": ckpt_uri})
    summary = step.run(
        cfg, train_path, stats_path, tmp_path / "out" / "encoder.pt", tmp_path / "out" / "history.json", run_name="t"
    )

    encoder = build_encoder(cfg.model)
    encoder.load_state_dict(torch.load(tmp_path / "out" / "encoder.pt", weights_only=True))
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert set(history["epochs"][0]) >= {"epoch", "loss", "lr", "images_per_second", "seconds"}
    assert history["summary"] == summary
    assert Config.from_dict(history["config"]).storage.checkpoint_uri == ckpt_uri
    assert {k: summary[k] for k in ("arch", "epochs", "batch_size", "device")} == {
        "arch": "resnet18",
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
    }
    assert LocalStore(tmp_path / "ckpt").exists("ckpt-000002/MANIFEST.json")


def test_run_scoped_checkpoints_resume_retries_but_not_the_next_run(tmp_path):
    """On a cluster the scope is the KFP run ID: a retried task resumes, a new (scheduled) run starts over."""
    train_path, stats_path = _write_inputs(tmp_path)
    cfg = tiny_config(**{"pretrain.epochs": 1, "storage.checkpoint_uri": (tmp_path / "ckpt").as_uri()})

    def run(scope: str) -> dict:
        step.run(
            cfg,
            train_path,
            stats_path,
            tmp_path / "e.pt",
            tmp_path / "h.json",
            run_name="nightly",
            checkpoint_scope=scope,
        )
        return json.loads((tmp_path / "h.json").read_text())

    first = run("run-1")
    assert first["config"] == cfg.to_dict()  # the scope travels beside the config: one config, one digest
    assert first["config_sha256"] == config_digest(cfg)
    assert LocalStore(tmp_path / "ckpt").exists("run-1/ckpt-000001/MANIFEST.json")
    assert run("run-1")["epochs"] == first["epochs"]  # retry: resumed from the finished checkpoint
    run("run 2/../trial 1")  # next run (a sweep's trial): its own folder, each part one safe segment, no '..'
    assert LocalStore(tmp_path / "ckpt").exists("run-2/trial-1/ckpt-000001/MANIFEST.json")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["run-1", "run-2"]


def test_step_initialises_the_encoder_from_a_uri(tmp_path):
    train_path, stats_path = _write_inputs(tmp_path)
    cfg = tiny_config(**{"pretrain.epochs": 1})
    torch.manual_seed(123)  # differs from the run's own seed-0 initialisation
    source = build_encoder(cfg.model)
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)
    (tmp_path / "init.pt").write_bytes(buf.getvalue())
    still = cfg.override({"model.init": (tmp_path / "init.pt").as_uri(), "pretrain.lr": 1e-9})
    step.run(still, train_path, stats_path, tmp_path / "e.pt", tmp_path / "h.json", run_name="t")
    trained = torch.load(tmp_path / "e.pt", weights_only=True)
    assert torch.allclose(trained["conv1.weight"], source.state_dict()["conv1.weight"], atol=1e-6)
    (tmp_path / "e.pt").unlink(), (tmp_path / "h.json").unlink()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        step.run(
            cfg.override({"model.init": (tmp_path / "bad.pt").as_uri()}),
            train_path,
            stats_path,
            tmp_path / "e.pt",
            tmp_path / "h.json",
            run_name="t",
        )
    assert not (tmp_path / "e.pt").exists() and not (tmp_path / "h.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_channels_last_run_resumes(tmp_path, precision):
    cfg = tiny_config(
        **{
            "pretrain.epochs": 2,
            "pretrain.precision": precision,
            "pretrain.channels_last": True,
            "pretrain.device": "cuda",
        }
    )
    images, _ = structured_images()
    cuda = torch.device("cuda")
    with pytest.raises(Interrupt):
        train.train_simclr(cfg, images, MEAN, STD, device=cuda, store=LocalStore(tmp_path), callbacks=InterruptAfter(1))
    rec = Recorder()
    result = train.train_simclr(cfg, images, MEAN, STD, device=cuda, store=LocalStore(tmp_path), callbacks=rec)
    assert rec.start["start_epoch"] == 1 and rec.epochs == [2]
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert next(result.model.parameters()).device.type == "cuda" and result.summary["device"] == "cuda"


class SyncCheck(Callback):
    """CUDA sync debug mode "error" from the end of each epoch's first step to the end of its last.

    Each epoch's end reads its mean loss back (one sync per epoch, by design),
    so the mode is off from the last step's end until the next epoch's first step has run.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps, self.checked = steps_per_epoch, 0

    def on_step_end(self, step, seconds):
        self.checked += torch.cuda.get_sync_debug_mode() == 2  # this step ran in "error" mode
        torch.cuda.set_sync_debug_mode("default" if step % self.steps == 0 else "error")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_never_wait_for_the_host():
    """Augmentation, bf16 forward, loss, backward and LARS step without one host sync.

    (fp16 is not checked: GradScaler reads its found-inf flag back every step by design.)
    """
    cfg = tiny_config(**{"pretrain.epochs": 2, "pretrain.device": "cuda", "pretrain.precision": "bf16"})
    images, _ = structured_images()  # 4 steps per epoch
    check = SyncCheck(steps_per_epoch=4)
    try:
        train.train_simclr(cfg, images, MEAN, STD, device=torch.device("cuda"), callbacks=check)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.checked == 6  # steps 2-4 of both epochs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_checkpoint_resumes_on_cpu_with_the_augmentation_rng_reseeded(tmp_path, caplog):
    cfg = tiny_config(**{"pretrain.epochs": 2, "pretrain.device": "cuda"})
    images, _ = structured_images()
    store = LocalStore(tmp_path)
    with pytest.raises(Interrupt):
        train.train_simclr(
            cfg, images, MEAN, STD, device=torch.device("cuda"), store=store, callbacks=InterruptAfter(1)
        )
    rng = checkpoint.load_latest(store)[1]["rng"][0]
    assert rng["devices"]["augment"].startswith("cuda") and rng["generators"]["augment"].numel() == 16
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="kubeclr"):
        result = train.train_simclr(
            cfg.override({"pretrain.device": "cpu"}), images, MEAN, STD, device=CPU, store=store, callbacks=rec
        )
    reseeded = [r.getMessage() for r in caplog.records if "re-seeded" in r.getMessage()]
    assert len(reseeded) == 1 and "augment state saved on cuda" in reseeded[0], reseeded
    assert rec.start["start_epoch"] == 1 and rec.epochs == [2] and np.isfinite(result.history[-1]["loss"])


def test_background_views_are_bitwise_the_inline_views_and_leave_the_same_generator_state():
    cfg = tiny_config()
    images, _ = structured_images(n=48)
    aug = SimCLRAugment(cfg.augment, MEAN, STD)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    runs = {}
    for background in (False, True):
        gen = torch.Generator().manual_seed(9)
        pick = train._resident_picker(images, perm, batch_size=16, per_rank=8, rank=1)
        with view_batches(aug, pick, gen, steps=3, fmt=torch.contiguous_format, background=background) as batches:
            runs[background] = ([v.clone() for v in batches], gen.get_state())
    (inline, inline_state), (ahead, ahead_state) = runs[False], runs[True]
    assert len(inline) == len(ahead) == 3 and inline[0].shape == (16, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(inline, ahead))
    assert torch.equal(inline_state, ahead_state)
    assert not torch.equal(inline[0], inline[1])
    # batch i of rank 1 augments images perm[16 i + 8 : 16 i + 16]: same draws as paired_views on them
    check = paired_views(aug, images[perm[8:16]], torch.Generator().manual_seed(9))
    assert torch.equal(check, inline[0])


def test_prefetch_runs_ahead_on_its_own_thread_count_and_relays_errors():
    torch.set_num_threads(2)
    seen = []

    def produce(i):
        seen.append(torch.get_num_threads())
        if i == 3:
            raise ValueError("bad batch 3")
        return i * 10

    got = []
    with pytest.raises(ValueError, match="bad batch 3"), Prefetch(produce, 6, threads=1) as items:
        for item in items:
            got.append(item)
    assert got == [0, 10, 20] and seen == [1, 1, 1, 1] and torch.get_num_threads() == 2


def test_prefetch_stops_its_producer_when_the_consumer_leaves_early():
    produced = []
    with Prefetch(lambda i: produced.append(i) or i, 1000, depth=1) as items:
        for item in items:
            if item == 2:
                break
    assert 3 <= len(produced) <= 5  # 3 consumed, at most one queued and one in flight, not 1000
    assert not any(t.name == "kubeclr-prefetch" and t.is_alive() for t in threading.enumerate())
