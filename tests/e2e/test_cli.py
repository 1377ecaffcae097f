"""The CLI as a user meets it: help, one-line errors, and the whole local run."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.cifar_fixtures import make_cifar_tarball

CLI = [sys.executable, "-m", "kubeclr.cli"]


def run(*args, timeout=600, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


def test_help_lists_the_design_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("run", "compile", "upload", "submit", "schedule", "bench"):
        assert command in proc.stdout
    for command in ("run", "compile", "upload", "submit", "schedule", "bench"):
        sub = run(command, "--help")
        assert sub.returncode == 0, command
        assert "default" in sub.stdout, command
        assert "(default: None)" not in sub.stdout and "(default: False)" not in sub.stdout, command
    schedule = " ".join(run("schedule", "--help").stdout.split())
    assert "runs allowed at once (default: 1)" in schedule
    assert "once resumed --no-catchup" in schedule  # --catchup: no misleading default


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["compile", "--set", "pretrain.epochs=-3"], "pretrain.epochs=-3 is out of range"),
        (["compile", "--preset", "huge"], "unknown preset 'huge'"),
        (["compile", "--set", "model.arch=vgg"], "one of resnet18, resnet34, resnet50"),
        (["compile", "--node-selector", "gpu"], "expected KEY=VALUE"),
        (["compile", "--set", "data.md5=xyz"], "data.md5='xyz' is not allowed (32 hex digits or 'none')"),
        (["compile", "--set", "data.source=ftp://h/c.tar.gz"], "unsupported scheme (allowed: http(s)://, s3://"),
        (["compile", "--set", "storage.checkpoint_uri=gs://b/x"], "unsupported scheme (allowed: s3://, file://"),
    ],
)
def test_user_errors_are_one_line(args, fragment, tmp_path):
    proc = run(*args, "--output", str(tmp_path / "p.yaml"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_compile_into_a_directory_is_one_line(tmp_path):
    proc = run("compile", "--output", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: output {tmp_path}: is a directory (name a file in it, e.g. {tmp_path / 'simclr.yaml'})"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "output, message",
    [
        ("file/p.yaml", "error: output folder {tmp}/file: a file is in the way (a directory is needed)"),
        ("/proc/self/p.yaml", "error: output /proc/self/p.yaml: cannot be written"),
    ],
)
def test_compile_output_that_cannot_be_written_is_one_line(tmp_path, output, message):
    (tmp_path / "file").write_text("")
    proc = run("compile", "--output", str(tmp_path / output) if not output.startswith("/") else output)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(message.format(tmp=tmp_path)), proc.stderr
    assert "Traceback" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_preset_and_config_exclude_each_other(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {arch: resnet34}\n")
    proc = run("compile", "--preset", "fast", "--config", str(config), "--output", str(tmp_path / "p.yaml"))
    assert proc.returncode == 2 and "argument --config: not allowed with argument --preset" in proc.stderr
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--output-dir", "FILE", "error: --output-dir {tmp}/file: a file is in the way (a directory is needed)"),
        (
            "--output-dir",
            "FILE/sub",
            "error: --output-dir {tmp}/file/sub: cannot create the directory (Not a directory)",
        ),
        ("--data-source", "{tmp}/missing.tar.gz", "error: data.source {tmp}/missing.tar.gz: no such file"),
        ("--data-md5", "xyz", "error: --data-md5: data.md5='xyz' is not allowed (32 hex digits or 'none')"),
    ],
)
def test_local_run_refuses_bad_arguments_before_starting(tmp_path, flag, value, message):
    (tmp_path / "file").write_text("")
    value = value.replace("FILE", str(tmp_path / "file")).format(tmp=tmp_path)
    args = {"--output-dir": str(tmp_path / "out"), flag: value}
    proc = run("run", "--local", "--preset", "smoke", *[x for kv in args.items() for x in kv], timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == message.format(tmp=tmp_path), proc.stderr
    assert proc.stdout == ""  # kfp.local never started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _check_outputs(out: Path, run_name: str) -> dict:
    from kubeclr.report.metrics import validate_metrics

    for name in ("metrics.json", "report.html", "report.md", "encoder.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    validate_metrics(metrics)
    assert metrics["run_name"] == run_name
    state = torch.load(out / "encoder.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert run_name in (out / "report.html").read_text()
    # the label-free measures, in every run: on the test images, beside the accuracy
    rep = metrics["representation"]
    assert rep["n_images"] == min(metrics["dataset"]["test_size"], 2048) and metrics["dataset"]["labelled"] is True
    assert 1.0 <= rep["rankme"] <= min(rep["n_images"], rep["feature_dim"]) and 0.0 <= rep["alignment"] <= 4.0
    assert -4.0 <= rep["uniformity"] <= 0.0 and "Representation (label-free)" in (out / "report.html").read_text()
    head = metrics["pretrain"]["representation_head"]  # where Wang & Isola measure SimCLR: the head's output z
    assert head["dim"] == metrics["config"]["model"]["proj_dim"] and 0.0 <= head["alignment"] <= 4.0
    _check_exported(out, metrics, state)
    return metrics


def _check_exported(out: Path, metrics: dict, state: dict) -> None:
    """encoder.onnx / encoder.ts take uint8 images and give the PyTorch encoder's features; model.json is this run's."""
    import numpy as np
    import onnxruntime as ort

    from kubeclr.config import config_digest, resolve, restrict
    from kubeclr.core.augment import normalize
    from kubeclr.core.model import build_encoder
    from kubeclr.steps import reads

    card = json.loads((out / "model.json").read_text())
    run_config = resolve(metrics["config"])
    assert card["config_sha256"] == config_digest(restrict(run_config, reads("export_model")))  # what made the model
    assert card["run_name"] == metrics["run_name"]
    assert card["metrics"]["linear"]["test_top1"] == metrics["linear_eval"]["test_top1"]
    assert card["metrics"]["knn_test_top1"] == metrics["knn"]["test_top1"]
    norm = card["input"]["normalisation"]
    assert (norm["mean"], norm["std"]) == (metrics["dataset"]["mean"], metrics["dataset"]["std"])
    assert card["model"]["arch"] == metrics["config"]["model"]["arch"]
    for name in ("encoder.onnx", "encoder.ts", "classifier.onnx", "classifier.ts"):
        assert card["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest(), name
    encoder = build_encoder(run_config.model)
    encoder.load_state_dict(state)
    from kubeclr.data.files import read_split

    (test_split,) = out.glob(".kfp/*/download-split/test")  # the run's own test images
    images = torch.from_numpy(read_split("test split", test_split).images[:5])
    assert list(images.shape[1:]) == card["input"]["shape"][1:]
    with torch.no_grad():
        expected = encoder.eval()(normalize(images, norm["mean"], norm["std"]))
        scripted = torch.jit.load(str(out / "encoder.ts"))(images)
    session = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["embedding"], {"images": images.numpy()})
    assert onnx_out.dtype == np.float32 and onnx_out.shape == (5, card["output"]["shape"][1])
    assert np.abs(onnx_out - expected.numpy()).max() <= 1e-4
    assert (scripted - expected).abs().max().item() <= 1e-4


@pytest.mark.e2e
def test_local_run_on_a_cifar_layout_tarball(tmp_path):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_cifar_tarball(tarball, per_batch=40, seed=1)
    out = tmp_path / "out"
    proc = run(
        "run",
        "--local",
        "--preset",
        "smoke",
        "--cifar-source",
        f"file://{tarball}",
        "--cifar-md5",
        md5,
        "--output-dir",
        str(out),
        "--run-name",
        "e2e-tarball",
        "--set",
        "pretrain.epochs=1",
        "--set",
        "data.train_limit=0",
        "--set",
        "data.val_limit=0",
        "--set",
        "data.test_limit=0",
        "--set",
        "eval.tsne_points=50",
        "--checkpoint-uri",
        f"file://{tmp_path / 'ckpt'}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = _check_outputs(out, "e2e-tarball")
    assert metrics["dataset"]["synthetic"] is False
    assert (metrics["dataset"]["train_size"], metrics["dataset"]["val_size"], metrics["dataset"]["test_size"]) == (
        160,
        40,
        40,
    )
    assert metrics["pretrain"]["epochs"] == 1
    assert "report.html" in proc.stdout
    assert f"linear test top-1 {metrics['linear_eval']['test_top1']:.3f}" in proc.stdout
    assert "Got executor_input" not in proc.stdout and "Loading KFP component" in proc.stdout  # only the dump goes
    assert any((tmp_path / "ckpt").rglob("MANIFEST.json"))


@pytest.mark.e2e
def test_local_run_with_a_bad_md5_fails_with_one_clear_line(tmp_path):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tarball(tarball, per_batch=10, seed=2)
    out = tmp_path / "out"
    proc = run(
        "run",
        "--local",
        "--preset",
        "smoke",
        "--cifar-source",
        str(tarball),
        "--cifar-md5",
        "0" * 32,
        "--output-dir",
        str(out),
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local run failed: download_split:") and "0" * 32 in last, last
    assert not (out / "metrics.json").exists()


@pytest.mark.e2e
def test_every_step_runs_with_one_resolved_config(tmp_path):
    """Overrides in four sections reach all six steps from one resolution, each step seeing exactly its view of
    that config (the kNN monitor once ran with the default k = 200 because pretraining never received eval)."""
    import re
    from dataclasses import fields

    from kubeclr.config import config_digest, resolve, restrict
    from kubeclr.steps import reads

    tarball = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_cifar_tarball(tarball, per_batch=20, seed=4)
    sets = ["eval.knn_k=7", "augment.color_strength=0.4", "pretrain.temperature=0.3", "data.seed=3"]
    sets += ["pretrain.epochs=1", "pretrain.batch_size=32", "pretrain.knn_every=1", "data.train_limit=0"]
    sets += ["data.val_limit=0", "data.test_limit=0", "eval.tsne_points=20"]
    proc = run(
        *["run", "--local", "--preset", "smoke", "--data-source", str(tarball), "--data-md5", md5],
        *["--output-dir", str(tmp_path / "out"), "--run-name", "one-config"],
        *[a for kv in sets for a in ("--set", kv)],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = dict(re.findall(r"(\w+): config sha256 ([0-9a-f]{64})", proc.stdout + proc.stderr))
    steps = {"download_split", "compute_stats", "pretrain", "extract_features", "linear_eval", "report"}
    assert set(digests) == steps | {"resolve_config", "export_model", "regression_gate"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["eval"]["knn_k"], config["augment"]["color_strength"]) == (7, 0.4)
    assert (config["pretrain"]["temperature"], config["data"]["seed"]) == (0.3, 3)
    whole = resolve(config)
    assert metrics["config_sha256"] == config_digest(whole) == digests["resolve_config"] == digests["report"]
    every_section = [f.name for f in fields(whole)]
    for step, digest in digests.items():  # each step ran on its view of that one config: what its READS name
        read = reads(step)
        assert digest == config_digest(restrict(whole, every_section if read is None else read)), step
    assert metrics["pretrain"]["knn_monitor"]["k"] == 7 and metrics["knn"]["k"] == 7
    history = json.loads(next((tmp_path / "out" / ".kfp").rglob("pretrain/history")).read_text())
    assert history["config"] == restrict(whole, reads("pretrain")).to_dict()
    assert history["config_sha256"] == digests["pretrain"]
    assert "knn_top1" in history["epochs"][-1]


@pytest.mark.parametrize("engine, kind", [("trainjob", "TrainJob"), ("pytorchjob", "PyTorchJob")])
def test_render_job_prints_one_valid_job_offline(engine, kind):
    import yaml

    from kubeclr.config import resolve
    from kubeclr.launch.entry import build_parser, read_config

    proc = run(
        "render-job",
        "--engine",
        engine,
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--preset",
        "fast",
        "--queue-name",
        "team-gpus",
        "--namespace",
        "ml",
        "--checkpoint-uri",
        "s3://b/runs",
        timeout=120,
        env={**os.environ, "KUBERNETES_SERVICE_HOST": "", "AWS_ENDPOINT_URL": "http://0.0.0.0:1"},
    )
    assert proc.returncode == 0, proc.stderr
    (job,) = list(yaml.safe_load_all(proc.stdout))
    assert (job["kind"], job["metadata"]["namespace"]) == (kind, "ml")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    if kind == "TrainJob":
        from tests.unit.test_trainjob_spec import check_against_the_v2_3_api

        check_against_the_v2_3_api(job)
        args = job["spec"]["trainer"]["args"][2:]
        assert job["spec"]["trainer"]["numNodes"] == 2 and job["spec"]["trainer"]["numProcPerNode"] == 8
    else:
        master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
        args = master["command"][master["command"].index("kubeclr.launch.entry") + 1 :]
        assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    cfg = read_config(build_parser().parse_args([a.replace("$$", "$") for a in args]))  # no $(VAR) in ours
    assert cfg == resolve(cfg.to_dict()) and cfg.pretrain.batch_size == 512  # the fast preset, whole
    assert cfg.cluster.engine == engine


def test_cluster_commands_say_which_preset_they_compile(tmp_path):
    proc = run("compile", "--output", str(tmp_path / "p.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "preset 'fast' (the default: no --preset or --config given)" in proc.stdout
    import yaml

    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["batch_size"]["defaultValue"] == 512  # not the CPU demo


def test_render_job_defaults_to_the_gpu_preset_and_the_configs_engine():
    import yaml

    proc = run("render-job", "--checkpoint-uri", "s3://b/runs", timeout=120)
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    assert job["kind"] == "TrainJob"  # cluster.engine's default
    assert "render-job: TrainJob of preset 'fast' (the default" in proc.stderr
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
    spec = pod["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "kubeclr-pipeline-runner"  # what the step passes on
    proc = run("render-job", "--nodes", "1", "--checkpoint-uri", "s3://b/runs", timeout=120)
    assert proc.returncode == 2 and "a multi-node job needs 2 or more" in proc.stderr
