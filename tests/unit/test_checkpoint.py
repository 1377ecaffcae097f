"""Checkpoints: round trip, newest-complete selection, pruning, RNG capture, background writes."""

from __future__ import annotations

import io
import json
import logging
import random
import threading

import numpy as np
import pytest
import torch

from kubeclr.config import Config
from kubeclr.core import checkpoint, train
from kubeclr.core.train import Callback
from kubeclr.errors import StorageError
from kubeclr.storage.store import LocalStore, open_store


def list_checkpoints(store) -> list[int]:
    """Epochs whose manifest is stored (not verified), newest first; a write in flight is not waited for."""
    return checkpoint._epochs(store.list("ckpt-"), checkpoint.MANIFEST)


def _state(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "step": epoch * 10,
        "weights": torch.full((3, 2), float(epoch)),
        "history": [{"epoch": e, "loss": 1.0 / e} for e in range(1, epoch + 1)],
        "config": {"pretrain": {"epochs": 5, "crop": [0.08, 1.0]}},
    }


def test_round_trip_through_a_file_uri(tmp_path):
    uri = (tmp_path / "ckpts").as_uri()
    checkpoint.save_checkpoint(open_store(uri), 3, _state(3))
    epoch, state = checkpoint.load_latest(open_store(uri))
    assert epoch == 3
    assert torch.equal(state["weights"], torch.full((3, 2), 3.0))
    assert state["history"] == _state(3)["history"]
    assert state["config"] == _state(3)["config"]
    manifest = json.loads((tmp_path / "ckpts" / "ckpt-000003" / "MANIFEST.json").read_text())
    assert manifest["epoch"] == 3 and manifest["step"] == 30
    assert manifest["files"]["state.pt"]["size"] == (tmp_path / "ckpts" / "ckpt-000003" / "state.pt").stat().st_size


def test_empty_store_has_no_checkpoint(tmp_path):
    assert checkpoint.load_latest(LocalStore(tmp_path / "none")) is None


def test_keeps_only_the_newest_complete_checkpoints(tmp_path):
    store = LocalStore(tmp_path)
    for epoch in range(1, 5):
        checkpoint.save_checkpoint(store, epoch, _state(epoch), keep=2)
    assert list_checkpoints(store) == [4, 3]
    assert store.list() == [
        "ckpt-000003/MANIFEST.json",
        "ckpt-000003/state.pt",
        "ckpt-000004/MANIFEST.json",
        "ckpt-000004/state.pt",
    ]


def test_incomplete_newest_checkpoint_is_ignored(tmp_path, caplog):
    store = LocalStore(tmp_path)
    checkpoint.save_checkpoint(store, 1, _state(1))
    checkpoint.save_checkpoint(store, 2, _state(2))
    store.delete("ckpt-000002/MANIFEST.json")  # crashed between state.pt and its manifest
    with caplog.at_level(logging.WARNING):
        epoch, state = checkpoint.load_latest(store)
    assert epoch == 1 and torch.equal(state["weights"], torch.full((3, 2), 1.0))
    assert "incomplete" in caplog.text and "ckpt-000002" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "flip", "bad_manifest", "manifest_without_entry", "missing_state"])
def test_corrupt_newest_checkpoint_is_ignored(tmp_path, caplog, damage):
    store = LocalStore(tmp_path)
    checkpoint.save_checkpoint(store, 1, _state(1))
    checkpoint.save_checkpoint(store, 2, _state(2))
    state_file = tmp_path / "ckpt-000002" / "state.pt"
    blob = state_file.read_bytes()
    if damage == "truncate":
        state_file.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        state_file.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    elif damage == "bad_manifest":
        (tmp_path / "ckpt-000002" / "MANIFEST.json").write_text("{not json")
    elif damage == "manifest_without_entry":
        (tmp_path / "ckpt-000002" / "MANIFEST.json").write_text('{"files": {"state.pt": "deadbeef"}}')
    else:
        state_file.unlink()
    with caplog.at_level(logging.WARNING):
        epoch, _ = checkpoint.load_latest(store)
    assert epoch == 1
    assert "ignoring checkpoint" in caplog.text


def test_state_with_arbitrary_objects_is_refused_on_load(tmp_path, caplog):
    """A manifest-consistent state.pt holding a non-weights object must not be unpickled."""
    store = LocalStore(tmp_path)
    checkpoint.save_checkpoint(store, 1, _state(1))
    checkpoint.save_checkpoint(store, 2, {"evil": _Unsafe()})
    with caplog.at_level(logging.WARNING):
        epoch, _ = checkpoint.load_latest(store)
    assert epoch == 1
    assert "cannot load" in caplog.text


class _Unsafe:
    """A custom class: weights_only loading must reject it."""


def test_rng_capture_and_restore_replays_every_stream():
    gens = {"shuffle": torch.Generator().manual_seed(1), "augment": torch.Generator().manual_seed(2)}
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    saved = checkpoint.capture_rng(gens)

    def draw():
        return (
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
            np.random.randn(),
            torch.rand(2, generator=gens["shuffle"]).tolist(),
            torch.rand(2, generator=gens["augment"]).tolist(),
        )

    first = draw()
    draw()
    checkpoint.restore_rng(saved, gens)
    assert draw() == first
    # the captured state survives a weights_only round trip through a checkpoint
    buf = io.BytesIO()
    torch.save(saved, buf)
    reloaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    checkpoint.restore_rng(reloaded, gens)
    assert draw() == first


# a CUDA generator's state is its Philox seed and offset, 8 bytes each (a CPU one is 5056 bytes)
CUDA_STATE = torch.tensor([42, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)


@pytest.mark.parametrize("recorded", [True, False], ids=["devices-recorded", "older-checkpoint"])
def test_a_generator_state_from_another_device_is_reported_not_restored(recorded):
    gens = {"shuffle": torch.Generator().manual_seed(1), "augment": torch.Generator().manual_seed(2)}
    saved = checkpoint.capture_rng(gens)
    assert saved["devices"] == {"shuffle": "cpu", "augment": "cpu"} and "cuda" not in saved
    assert saved["generators"]["augment"].numel() == 5056  # the CPU state CUDA_STATE must not be mistaken for
    saved["generators"]["augment"] = CUDA_STATE  # as a CUDA run writes it
    saved["devices"]["augment"] = "cuda:1"
    if not recorded:  # checkpoints before the devices were recorded: judged by the state's size
        del saved["devices"]
        saved["cuda"] = [CUDA_STATE, CUDA_STATE]  # and they held every default CUDA generator
    fresh = torch.Generator().manual_seed(2).get_state()
    torch.rand(3, generator=gens["shuffle"]), torch.rand(3, generator=gens["augment"])

    skipped = checkpoint.restore_rng(saved, gens)

    assert list(skipped) == ["augment"]
    assert ("cuda:1" if recorded else "16 bytes") in skipped["augment"]
    assert torch.equal(gens["shuffle"].get_state(), saved["generators"]["shuffle"])  # restored
    assert not torch.equal(gens["augment"].get_state(), fresh)  # untouched: re-seeding is the caller's choice


def test_a_device_type_mismatch_is_caught_even_when_the_sizes_agree():
    gen = torch.Generator().manual_seed(3)
    saved = checkpoint.capture_rng({"augment": gen})
    saved["devices"]["augment"] = "cuda:0"  # say a backend whose state happened to be CPU-sized
    assert "saved on cuda:0, resuming on cpu" in checkpoint.rng_mismatch(saved, "augment", gen)
    assert checkpoint.rng_mismatch(checkpoint.capture_rng({"augment": gen}), "augment", gen) is None


def test_an_unreachable_store_fails_instead_of_resuming_from_an_older_checkpoint(tmp_path):
    """A transient storage error is not a corrupt checkpoint: skipping it would silently lose work."""
    store = LocalStore(tmp_path)
    checkpoint.save_checkpoint(store, 1, _state(1))
    checkpoint.save_checkpoint(store, 2, _state(2))

    class Flaky(LocalStore):
        def read_bytes(self, key):
            if key.startswith("ckpt-000002/"):
                raise StorageError(f"{self.uri}/{key}: cannot reach S3 endpoint")
            return super().read_bytes(key)

    with pytest.raises(StorageError, match="cannot reach"):
        checkpoint.load_latest(Flaky(tmp_path))


# -- background writes ----------------------------------------------------------


class GatedStore(LocalStore):
    """A store whose write of ``gated`` blocks until ``release`` is set (or 10 s have passed)."""

    def __init__(self, root, gated: str) -> None:
        super().__init__(root)
        self.gated = gated
        self.entered, self.release = threading.Event(), threading.Event()
        self.released: bool | None = None  # True: released by the test; False: timed out

    def write_bytes(self, key, data):
        if key == self.gated:
            self.entered.set()
            self.released = self.release.wait(timeout=10)
        super().write_bytes(key, data)


class FailingStore(LocalStore):
    """A store that raises on writing ``failing``, as a pod killed mid-upload would stop."""

    def __init__(self, root, failing: str) -> None:
        super().__init__(root)
        self.failing = failing

    def write_bytes(self, key, data):
        if key == self.failing:
            raise StorageError(f"{self.uri}/{key}: connection reset")
        super().write_bytes(key, data)


def _model_state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return {"model": model.state_dict(), "epoch": 1, "step": 10, "history": [{"epoch": 1, "loss": 2.0}]}


def test_a_save_returns_while_its_write_is_in_flight_and_the_next_save_waits(tmp_path):
    store = GatedStore(tmp_path, gated="ckpt-000001/state.pt")
    writer = checkpoint.CheckpointWriter(store)
    writer.submit(1, _state(1))  # returns although the write cannot finish yet
    assert store.entered.wait(timeout=10) and not store.exists("ckpt-000001/MANIFEST.json")

    second = threading.Thread(target=writer.submit, args=(2, _state(2)))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive()  # waiting for the first write: at most one in flight
    assert not any(key.startswith("ckpt-000002/") for key in store.list())

    store.release.set()
    second.join(timeout=10)
    writer.wait()
    assert store.released is True
    assert list_checkpoints(store) == [2, 1]


def test_the_snapshot_is_a_copy_taken_at_save_time(tmp_path, monkeypatch):
    """Training goes on mutating the live tensors (in place) while the write, serialisation included, waits."""
    started, release = threading.Event(), threading.Event()
    save = checkpoint.save_checkpoint

    def gated_save(*args, **kwargs):  # what the writer thread runs: hold it before it serialises
        started.set()
        assert release.wait(timeout=10)
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", gated_save)
    writer = checkpoint.CheckpointWriter(LocalStore(tmp_path))
    live = _model_state()
    expected = {k: v.clone() for k, v in live["model"].items()}
    writer.submit(1, live)
    assert started.wait(timeout=10)
    for tensor in live["model"].values():
        tensor.add_(1)  # an optimiser step, and BatchNorm's running statistics
    live["history"].append({"epoch": 2, "loss": 1.0})
    release.set()
    writer.wait()

    _, state = checkpoint.load_latest(LocalStore(tmp_path))
    assert state["model"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state["model"][key], value), key
    assert state["history"] == [{"epoch": 1, "loss": 2.0}]
    assert state["model"]._metadata == live["model"]._metadata  # the layers' versions, for load_state_dict


def test_this_process_reads_its_own_write_in_flight(tmp_path):
    """A run that fails mid-write and is retried in-process resumes from that checkpoint, not an older one."""
    store = GatedStore(tmp_path, gated="ckpt-000001/state.pt")
    checkpoint.CheckpointWriter(store).submit(1, _state(1))
    assert store.entered.wait(timeout=10)
    found = []
    reader = threading.Thread(target=lambda: found.append(checkpoint.load_latest(LocalStore(tmp_path))))
    reader.start()
    reader.join(timeout=0.5)
    assert reader.is_alive()  # waits for the write instead of reading a half-written checkpoint
    store.release.set()
    reader.join(timeout=10)
    assert found[0][0] == 1


def test_host_copy_shares_no_memory_and_keeps_the_layout():
    weight = torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)
    original = {"w": weight, "nested": [weight, (1, "a")], "lr": 0.1}
    copied = checkpoint.host_copy(original)
    assert copied["w"].data_ptr() != weight.data_ptr() and torch.equal(copied["w"], weight)
    assert copied["w"].stride() == weight.stride()
    assert copied["nested"][1] == (1, "a") and copied["lr"] == 0.1


def test_a_failed_write_is_raised_at_the_next_save_once(tmp_path, caplog):
    store = FailingStore(tmp_path, failing="ckpt-000001/state.pt")
    writer = checkpoint.CheckpointWriter(store)
    with caplog.at_level(logging.ERROR):
        writer.submit(1, _state(1))
        with pytest.raises(StorageError, match="connection reset"):
            writer.submit(2, _state(2))
    assert "ckpt-000001 not written" in caplog.text  # logged when it happened, too
    writer.wait()  # raised once, not again
    assert store.list() == []  # the failed save is not retried, the refused one never started


def test_a_write_killed_before_its_manifest_leaves_the_previous_checkpoint_newest(tmp_path):
    store = FailingStore(tmp_path, failing="ckpt-000002/MANIFEST.json")
    writer = checkpoint.CheckpointWriter(store)
    writer.submit(1, _state(1))
    writer.submit(2, _state(2))
    with pytest.raises(StorageError):
        writer.wait()
    assert store.exists("ckpt-000002/state.pt")  # the object got written, its manifest did not
    epoch, state = checkpoint.load_latest(LocalStore(tmp_path))
    assert epoch == 1 and torch.equal(state["weights"], torch.full((3, 2), 1.0))


def _tiny_run(epochs: int) -> Config:
    return Config().override(
        {
            "model.width": 4,
            "model.proj_dim": 16,
            "augment.size": 16,
            "pretrain.batch_size": 16,
            "pretrain.epochs": epochs,
            "pretrain.device": "cpu",
            "pretrain.warmup_epochs": 1,
            "pretrain.checkpoint_every": 1,
        }
    )


class ReleaseInEpoch(Callback):
    """Releases the gated write from a step callback of ``epoch``: the loop got past the save of the epoch before."""

    def __init__(self, store: GatedStore, epoch: int, steps_per_epoch: int) -> None:
        self.store, self.first_step = store, (epoch - 1) * steps_per_epoch + 1
        self.write_was_pending = False

    def on_step_end(self, step, seconds):
        if step == self.first_step:
            self.write_was_pending = self.store.entered.is_set() and not self.store.release.is_set()
            self.store.release.set()


@pytest.mark.usefixtures("one_thread")
def test_training_continues_while_a_checkpoint_is_written_and_waits_for_the_last(tmp_path):
    images = torch.randint(0, 256, (32, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    store = GatedStore(tmp_path, gated="ckpt-000001/state.pt")
    release = ReleaseInEpoch(store, epoch=2, steps_per_epoch=2)  # 32 images, batch 16
    mean, std = [0.5] * 3, [0.25] * 3
    train.train_simclr(_tiny_run(2), images, mean, std, device=torch.device("cpu"), store=store, callbacks=release)
    # a synchronous write would have blocked the loop in epoch 1 until the gate timed out
    assert release.write_was_pending and store.released is True
    assert list_checkpoints(LocalStore(tmp_path)) == [2, 1]  # the last one before returning


@pytest.mark.usefixtures("one_thread")
def test_a_failed_last_checkpoint_fails_the_run(tmp_path):
    images = torch.randint(0, 256, (32, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    store = FailingStore(tmp_path, failing="ckpt-000002/MANIFEST.json")
    with pytest.raises(StorageError, match="connection reset"):
        train.train_simclr(_tiny_run(2), images, [0.5] * 3, [0.25] * 3, device=torch.device("cpu"), store=store)
    assert checkpoint.load_latest(LocalStore(tmp_path))[0] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_copy_of_a_cuda_state_is_pinned_equal_and_independent():
    model = torch.nn.Conv2d(3, 8, 3).cuda().to(memory_format=torch.channels_last)
    state = {"model": model.state_dict(), "step": 3}
    copy = checkpoint.host_copy(state)
    weight = copy["model"]["weight"]
    assert weight.device.type == "cpu" and weight.is_pinned() and copy["step"] == 3
    assert torch.equal(weight, model.weight.detach().cpu()) and weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.weight.add_(1)
    assert not torch.equal(weight, model.weight.detach().cpu())
