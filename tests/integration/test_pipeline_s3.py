"""The whole local pipeline against real servers: SeaweedFS (S3) and a Pushgateway.

One run reads the dataset from ``s3://``, mirrors it, checkpoints to ``s3://``,
exports its results to ``s3://`` by run name and pushes training metrics; a
second, air-gapped fetch then reads the tarball from the mirror alone.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from cifar_fixtures import make_cifar_tarball
from prometheus_client.parser import text_string_to_metric_families

from kubeclr.config import load_config
from kubeclr.report.metrics import validate_metrics
from kubeclr.steps.download_split import run as download_split

pytestmark = pytest.mark.integration


def test_local_pipeline_on_s3_with_mirror_checkpoints_export_and_metrics(s3_server, pushgateway, tmp_path):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_cifar_tarball(tarball, per_batch=30, seed=3)
    s3 = s3_server.client()
    s3.upload_file(str(tarball), s3_server.bucket, "datasets/cifar-10-python.tar.gz")
    out, run_name = tmp_path / "out", "s3-run"

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeclr.cli",
            "run",
            "--local",
            "--preset",
            "smoke",
            "--cifar-source",
            s3_server.uri("datasets/cifar-10-python.tar.gz"),
            "--cifar-md5",
            md5,
            "--checkpoint-uri",
            s3_server.uri("ckpt"),
            "--output-dir",
            str(out),
            "--run-name",
            run_name,
            "--set",
            "storage.mirror_uri=" + s3_server.uri("mirror"),
            "--set",
            "storage.export_uri=" + s3_server.uri("export"),
            "--set",
            "metrics.pushgateway_url=" + pushgateway.url,
            "--set",
            "pretrain.epochs=1",
            "--set",
            "pretrain.batch_size=32",
            "--set",
            "model.width=4",
            "--set",
            "eval.tsne_points=40",
            "--set",
            "data.train_limit=0",
            "--set",
            "data.val_limit=0",
            "--set",
            "data.test_limit=0",
            "--set",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    metrics = json.loads((out / "metrics.json").read_text())
    validate_metrics(metrics)
    assert metrics["dataset"]["source"] == s3_server.uri("datasets/cifar-10-python.tar.gz")
    assert metrics["dataset"]["train_size"] == 120
    torch.load(out / "encoder.pt", weights_only=True)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])}
    assert f"mirror/{md5}/cifar-10-python.tar.gz" in keys
    assert {"ckpt/ckpt-000001/state.pt", "ckpt/ckpt-000001/MANIFEST.json"} <= keys
    for name in ("encoder.pt", "report.html", "report.md", "metrics.json"):
        assert f"export/{run_name}/{name}" in keys, name
    exported = json.loads(s3.get_object(Bucket=s3_server.bucket, Key=f"export/{run_name}/metrics.json")["Body"].read())
    assert exported == metrics

    # the Pushgateway holds the run's training series, labelled by run
    families = {f.name: f for f in text_string_to_metric_families(pushgateway.metrics_text())}
    loss = [s for s in families["simclr_loss"].samples if s.labels.get("run") == run_name]
    assert loss and loss[0].value == pytest.approx(metrics["pretrain"]["final_loss"], rel=1e-4)
    steps = {s.labels["step"] for s in families["simclr_step_success"].samples if s.labels.get("run") == run_name}
    assert steps >= {"download_split", "compute_stats", "pretrain", "extract_features", "linear_eval", "report"}

    # air-gapped: the source is unreachable, the mirror answers (MD5-verified)
    cfg = load_config(
        "smoke",
        overrides=[
            "data.source=https://127.0.0.1:9/cifar-10-python.tar.gz",
            f"data.md5={md5}",
            "storage.mirror_uri=" + s3_server.uri("mirror"),
            f"data.cache_dir={tmp_path / 'cache2'}",
            "data.train_limit=0",
            "data.val_limit=0",
            "data.test_limit=0",
        ],
    )
    info = download_split(cfg, tmp_path / "t.npz", tmp_path / "v.npz", tmp_path / "s.npz")
    assert info["md5"] == md5 and info["train_size"] == 120
