"""Checkpoints: round trip, newest-complete selection, pruning, RNG capture."""

from __future__ import annotations

import io
import json
import logging
import random

import numpy as np
import pytest
import torch

from kubeclr.core import checkpoint
from kubeclr.storage.store import LocalStore, open_store


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
    assert checkpoint.list_checkpoints(store) == [4, 3]
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
    from kubeclr.errors import StorageError

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
