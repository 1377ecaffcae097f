"""Data-parallel pretraining under a real ``torchrun`` with two gloo processes.

This file is also the worker script: ``torchrun … tests/integration/test_ddp.py
parity OUT`` or ``… audit LOG <entry-point args>``.

Parity compares two DDP steps on two ranks with one process on the
concatenated batch. BatchNorm in training mode normalises with each rank's own
batch statistics, so per-rank and global batches legitimately give different
outputs (that is what SyncBatchNorm is for, and it has no gloo kernels); the
parity model therefore runs BatchNorm in eval mode, where every sample is
processed independently and only the loss couples the samples — which is
exactly the cross-rank coupling (the gathered negatives) under test.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "model.width=4",
    "model.proj_dim=16",
    "augment.size=16",
    "pretrain.batch_size=16",
    "pretrain.device=cpu",
    "pretrain.warmup_epochs=1",
    "pretrain.checkpoint_every=1",
    "data.seed=0",
]


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECLR_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# -- workers (run by torchrun) ------------------------------------------------


def _parity_worker(out_dir: str) -> None:
    from kubeclr.bench.article import forward_loss
    from kubeclr.config import Config
    from kubeclr.core import distributed
    from kubeclr.core.loss import NTXentLoss
    from kubeclr.core.model import build_model

    ctx = distributed.init_from_env("cpu")
    cfg = Config().override(TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()  # eval-mode BN: see the module docstring
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    # two steps of a global batch of 16 pairs, the same on all ranks: the second runs on DDP's
    # static-graph buckets, with .grad as bucket views re-pointed after zero_grad(set_to_none=True)
    steps = torch.randn(2, 2, 16, 3, 16, 16, generator=gen)  # (step, view, 16, 3, S, S)

    ref_losses, ref_grads = [], []
    for view1, view2 in steps:
        reference.zero_grad(set_to_none=True)
        ref_loss = forward_loss(reference, NTXentLoss(0.5, gather_distributed=False), view1, view2)
        ref_loss.backward()
        ref_losses.append(ref_loss.item())
        ref_grads.append({k: p.grad.clone() for k, p in reference.named_parameters()})

    b = 16 // ctx.world_size
    shard = slice(ctx.rank * b, (ctx.rank + 1) * b)  # this rank's part of the global batch
    result = {}
    for name, gather in (("ddp", True), ("local_negatives_only", False)):
        ddp = distributed.wrap_model(copy.deepcopy(model), ctx.device)
        params = dict(distributed.unwrap(ddp).named_parameters())
        losses, diff = [], 0.0
        for (view1, view2), want in zip(steps, ref_grads):
            loss = forward_loss(ddp, NTXentLoss(0.5, gather_distributed=gather), view1[shard], view2[shard])
            ddp.zero_grad(set_to_none=True)  # between forward and backward, as the training loop does
            loss.backward()
            losses.append(float(distributed.all_reduce_mean(loss).item()))
            diff = max(diff, *((params[k].grad - g).abs().max().item() for k, g in want.items()))
        result[name] = {"loss": losses, "max_grad_diff": diff}
    result["ref_loss"] = ref_losses
    result["max_ref_grad"] = min(max(g.abs().max().item() for g in grads.values()) for grads in ref_grads)
    Path(out_dir, f"rank{ctx.rank}.json").write_text(json.dumps(result))
    distributed.cleanup()


def _audit_worker(log_path: str, argv: list[str]) -> None:
    """Run the entry point while recording which rank writes which file or object."""
    import kubeclr.launch.process as step
    from kubeclr.launch import entry
    from kubeclr.storage import store as storage

    rank = os.environ["RANK"]

    def note(what: str) -> None:
        with open(log_path, "a") as fh:
            fh.write(f"{rank} {what}\n")

    write_bytes, write_json, store_write = step.write_bytes_atomic, step.write_json, storage.LocalStore.write_bytes
    step.write_bytes_atomic = lambda path, data: (note(Path(path).name), write_bytes(path, data))[1]
    step.write_json = lambda path, obj: (note(Path(path).name), write_json(path, obj))[1]
    storage.LocalStore.write_bytes = lambda self, key, data: (note(key), store_write(self, key, data))[1]
    sys.exit(entry.main(argv))


# -- tests --------------------------------------------------------------------


@pytest.mark.integration
def test_two_rank_step_matches_one_process_on_the_concatenated_batch(tmp_path):
    _torchrun(str(Path(__file__)), "parity", str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for res in ranks:
        assert res["max_ref_grad"] > 1e-3  # the gradients are not trivially zero
        assert res["ddp"]["loss"] == pytest.approx(res["ref_loss"], abs=1e-5)
        assert res["ddp"]["max_grad_diff"] < 1e-5
        # control: contrasting only against local negatives is measurably different
        assert res["local_negatives_only"]["max_grad_diff"] > 1e-4
    assert ranks[0]["ddp"] == ranks[1]["ddp"]


@pytest.fixture()
def inputs(tmp_path):
    import numpy as np

    from kubeclr.atomic import write_json
    from kubeclr.data.files import Split, save_split

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 3, 16, 16), dtype=np.uint8)  # 40 // 16 = 2 global batches
    save_split(
        tmp_path / "train.npz",
        Split(
            images,
            np.arange(40) % 4,
            tuple("abcd"),
            {"source": "test", "synthetic": True, "split": "train", "seconds": 0.0, "md5": None},
        ),
    )
    write_json(
        tmp_path / "stats.json", {"mean": [0.5] * 3, "std": [0.25] * 3, "count": 40, "seconds": 0.0, "synthetic": True}
    )
    return tmp_path


@pytest.mark.integration
def test_entry_point_on_two_ranks_writes_once_and_resumes(inputs):
    from kubeclr.config import Config, load_config
    from kubeclr.core.model import build_encoder

    ckpt = (inputs / "ckpt").as_uri()

    def config_file(epochs: int) -> str:  # the resolved config, whole, as the torchrun engine writes it
        path = inputs / f"config-{epochs}.json"
        cfg = load_config("smoke", overrides=[*TINY, f"storage.checkpoint_uri={ckpt}", f"pretrain.epochs={epochs}"])
        path.write_text(json.dumps(cfg.to_dict()))
        return str(path)

    common = ["--train", str(inputs / "train.npz"), "--stats", str(inputs / "stats.json"), "--run-name", "ddp"]
    out = inputs / "out"
    _torchrun(
        "-m",
        "kubeclr.launch.entry",
        *common,
        "--config",
        config_file(2),
        "--encoder-out",
        str(out / "encoder.pt"),
        "--history-out",
        str(out / "history.json"),
    )
    first = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in first["epochs"]] == [1, 2]
    assert first["summary"]["world_size"] == 2 and first["summary"]["batch_size"] == 16
    encoder = build_encoder(Config.from_dict(first["config"]).model)
    encoder.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))
    assert sorted(p.name for p in out.iterdir()) == ["encoder.pt", "history.json"]  # no stray temp files

    # Second run: one more epoch, resumed from the two-rank checkpoint; record every write per rank.
    audit = inputs / "writes.log"
    _torchrun(
        str(Path(__file__)),
        "audit",
        str(audit),
        *common,
        "--config",
        config_file(3),
        "--encoder-out",
        str(out / "encoder.pt"),
        "--history-out",
        str(out / "history.json"),
        "--output-uri",
        (inputs / "export").as_uri(),
    )
    second = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in second["epochs"]] == [1, 2, 3]
    assert second["epochs"][:2] == first["epochs"]  # epochs 1-2 come from the checkpoint
    writes = audit.read_text().split()
    by_rank = {r: [writes[i + 1] for i in range(0, len(writes), 2) if writes[i] == r] for r in ("0", "1")}
    assert by_rank["1"] == []
    assert sorted(by_rank["0"]) == sorted(
        [
            "ckpt-000003/state.pt",
            "ckpt-000003/MANIFEST.json",
            "encoder.pt",
            "history.json",
            "encoder.pt",
            "history.json",
            "summary.json",
        ]
    )
    assert json.loads((inputs / "export" / "summary.json").read_text()) == second["summary"]


@pytest.mark.integration
def test_two_ranks_stream_disjoint_shards_in_the_same_number_of_steps(tmp_path):
    """data.stream=true under torchrun: each rank with its own decoding process, every rank the same steps."""
    from kubeclr.atomic import write_json
    from kubeclr.config import load_config
    from kubeclr.data.files import load_split
    from kubeclr.data.stream import open_index, stream_steps
    from kubeclr.steps import download_split
    from kubeclr.storage.folders import shard_dir
    from tests.unit.test_stream import _dataset

    shards = _dataset(tmp_path / "shards")  # 8 train shards of 12 images, 8 px
    data = ["data.format=webdataset", f"data.source={shards}", "data.md5=none", "data.image_size=8"]
    data += ["data.stream=true", "data.workers=1", "data.val_fraction=0.25"]
    cfg = load_config("smoke", overrides=[*TINY, *data, "augment.size=8", "pretrain.epochs=2"])
    splits = [tmp_path / f"{s}.npz" for s in ("train", "val", "test")]
    download_split.run(cfg, *splits)
    write_json(tmp_path / "stats.json", {"mean": [0.4] * 3, "std": [0.3] * 3, "count": 72, "seconds": 0.0})
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "out"
    proc = _torchrun(
        "-m",
        "kubeclr.launch.entry",
        "--train",
        str(splits[0]),
        "--stats",
        str(tmp_path / "stats.json"),
        "--run-name",
        "ddp-stream",
        "--config",
        str(tmp_path / "config.json"),
        "--history-out",
        str(out / "history.json"),
    )
    history = json.loads((out / "history.json").read_text())
    index = open_index(load_split(splits[0]), shard_dir)
    steps = stream_steps(index, 2, 8)  # the fewest images a rank can be dealt, in batches of 16 / 2
    assert history["summary"]["world_size"] == 2 and [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert "streamed from 8 shards" in proc.stdout + proc.stderr
    assert all(len(e["step_loss"]["values"]) == steps for e in history["epochs"]), (steps, history["epochs"])


if __name__ == "__main__":
    mode, target, *rest = sys.argv[1:]
    _parity_worker(target) if mode == "parity" else _audit_worker(target, rest)
