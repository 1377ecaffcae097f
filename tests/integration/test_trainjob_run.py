"""A ``nodes=2`` pretrain step through the TrainJob path, end to end on one machine.

The fake Kubernetes API (tests/fake_k8s_server.py) plays Kubeflow Trainer: when
the TrainJob is created it starts the job's own command — ``trainer.command`` +
``trainer.args``, as the ``node`` containers would run it — twice, as two nodes,
with the environment Trainer's torch plugin injects (``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``,
``PET_MASTER_PORT``), and reports ``jobsStatus`` until both exit, then
``Complete``. The rest of the pipeline then runs on the step's outputs, and its
report must look like the one of a single-node run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cifar_fixtures import make_cifar_tarball
from fake_k8s_server import FakeK8s, FakeK8sServer, expand, trainjob_condition

from kubeclr.cluster.k8s import K8sApi
from kubeclr.config import load_config
from kubeclr.launch.settings import LaunchSettings
from kubeclr.steps import compute_stats, download_split, extract_features, linear_eval, pretrain, report
from kubeclr.storage.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

TINY = [
    "model.width=4",
    "model.proj_dim=16",
    "pretrain.epochs=2",
    "pretrain.batch_size=16",
    "pretrain.device=cpu",
    "pretrain.checkpoint_every=1",
    "pretrain.knn_every=0",
    "data.train_limit=0",
    "data.val_limit=0",
    "data.test_limit=0",
    "eval.tsne_points=20",
    "metrics.port=0",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PlayTrainer:
    """Runs a created TrainJob's command as ``numNodes`` local processes with the torch plugin's env."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, job: dict) -> None:
        trainer = job["spec"]["trainer"]
        argv = [expand(a) for a in trainer["command"] + trainer["args"]]  # as the kubelet passes them on
        port = free_port()
        base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        base.update({e["name"]: e["value"] for e in trainer["env"] if "value" in e})
        base.update(
            {
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                "OMP_NUM_THREADS": "1",
                "KUBECLR_PROGRESS": "0",
                "CUDA_VISIBLE_DEVICES": "",
                "PET_NNODES": str(trainer["numNodes"]),
                "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
        )
        for rank in range(trainer["numNodes"]):
            self.procs.append(
                subprocess.Popen(
                    argv,
                    env={**base, "PET_NODE_RANK": str(rank)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )

    def status(self, job: dict) -> dict:
        codes = [p.poll() for p in self.procs]
        running = sum(c is None for c in codes)
        status = {"jobsStatus": [{"name": "node", "active": running, "succeeded": codes.count(0)}], "conditions": []}
        if running == 0:
            ok = all(c == 0 for c in codes)
            status["conditions"] = [
                trainjob_condition("Complete", "AllJobsCompleted")
                if ok
                else trainjob_condition("Failed", "FailedJobs", self.logs()[-2000:])
            ]
        return status

    def logs(self) -> str:
        return "\n".join(p.stdout.read() for p in self.procs if p.poll() is not None and p.stdout)


def run_pipeline(tmp_path: Path, cfg, *, nodes: int, settings: LaunchSettings) -> dict:
    """The six steps in this process; pretrain with ``nodes``. Returns metrics.json."""
    p = {name: tmp_path / f"{name}.npz" for name in ("train", "val", "test", "features")}
    f = {
        name: tmp_path / name
        for name in (
            "stats.json",
            "encoder.pt",
            "history.json",
            "results.json",
            "classifier.pt",
            "report.html",
            "report.md",
            "metrics.json",
        )
    }
    download_split.run(cfg, p["train"], p["val"], p["test"])
    compute_stats.run(cfg, p["train"], f["stats.json"])
    pretrain.run(
        cfg,
        p["train"],
        f["stats.json"],
        f["encoder.pt"],
        f["history.json"],
        run_name="two-nodes",
        checkpoint_scope="run-1",
        gpus=1,
        nodes=nodes,
        settings=settings,
    )
    extract_features.run(cfg, f["encoder.pt"], f["stats.json"], p["train"], p["val"], p["test"], p["features"])
    linear_eval.run(cfg, p["features"], f["results.json"], f["classifier.pt"])
    return report.run(
        cfg,
        run_name="two-nodes",
        train_path=p["train"],
        val_path=p["val"],
        test_path=p["test"],
        stats_path=f["stats.json"],
        history_path=f["history.json"],
        features_path=p["features"],
        results_path=f["results.json"],
        html_out=f["report.html"],
        markdown_out=f["report.md"],
        metrics_out=f["metrics.json"],
    )


def shape(obj):
    """The keys of a nested dict, without the values."""
    return {k: shape(v) for k, v in obj.items()} if isinstance(obj, dict) else type(obj).__name__


def test_two_nodes_through_a_trainjob_report_like_one_node(tmp_path, monkeypatch, s3_server):
    tarball = tmp_path / "cifar.tar.gz"
    make_cifar_tarball(tarball, per_batch=20, seed=5)
    trainer = PlayTrainer()
    state = FakeK8s(script=[{}], on_create=trainer.start, status_fn=trainer.status)
    settings = LaunchSettings(namespace="ml", poll_s=0.2, timeout_s=300, secret_name="")
    with FakeK8sServer(state) as srv:
        monkeypatch.setattr(K8sApi, "in_cluster", classmethod(lambda cls, sa_dir=None: K8sApi(srv.url)))
        two = tmp_path / "two"  # the job's pods share no disk: inputs, checkpoints and outputs go through S3
        cfg = load_config(
            "smoke",
            overrides=[
                *TINY,
                f"data.source={tarball}",
                "data.md5=none",
                f"storage.checkpoint_uri={s3_server.uri('runs')}",
            ],
        )
        metrics = run_pipeline(two, cfg, nodes=2, settings=settings)
    assert [p.returncode for p in trainer.procs] == [0, 0], trainer.logs()[-3000:]
    (post,) = state.of("POST")
    assert post.body["kind"] == "TrainJob" and post.path.endswith("/namespaces/ml/trainjobs")
    assert metrics["pretrain"]["world_size"] == 2 and metrics["pretrain"]["epochs"] == 2
    keys = open_store(s3_server.uri("runs/run-1")).list()
    assert any(k.startswith("checkpoints/ckpt-") and k.endswith("MANIFEST.json") for k in keys), keys

    one = tmp_path / "one"
    single = run_pipeline(
        one, cfg.override({"storage.checkpoint_uri": (one / "bucket").as_uri()}), nodes=1, settings=settings
    )
    assert single["pretrain"]["world_size"] == 1
    assert shape(metrics) == shape(single)  # the same report, whichever engine trained
    headings = [re.findall(r"<h2>([^<]+)</h2>", (d / "report.html").read_text()) for d in (two, one)]
    assert headings[0] == headings[1] and "Pretraining" in headings[0]
    assert json.loads((two / "metrics.json").read_text())["config_sha256"] == metrics["config_sha256"]
