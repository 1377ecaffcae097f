"""Every user error is one line: exit 2, the flag, number or file that caused it, no traceback.

The pods' sizes and the pipeline root are checked before anything compiles; a global batch that the
world does not divide is refused where the world is fixed; a dataset with a constant channel fails its
statistics step, and the local run's last line is that step's own cause.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from kubeclr.cli import main
from tests.cifar_fixtures import CLASS_NAMES, batch_arrays, write_tarball

CLI = [sys.executable, "-m", "kubeclr.cli"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line(rc: int, stderr: str, message: str) -> None:
    """Exit 2 and exactly one non-empty stderr line, starting ``error: <message>``; no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert rc == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), stderr[-2000:]
    assert "Traceback" not in stderr


def test_a_bad_quantity_is_one_line_from_the_installed_command(tmp_path):
    """The process as a user runs it (the cases below call the same ``main`` in-process: torch loads once)."""
    proc = run("compile", "--step-memory", "8GB", "--output", str(tmp_path / "p.yaml"))
    assert_one_line(proc.returncode, proc.stderr, "--step-memory 8GB is not a Kubernetes memory quantity")
    assert proc.stdout == "" and not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--step-memory", "8GB"],
            "--step-memory 8GB is not a Kubernetes memory quantity (use e.g. 8Gi, 512Mi or 8G)",
        ),
        (["--pretrain-cpu", "lots"], "--pretrain-cpu lots is not a Kubernetes CPU quantity (use e.g. 2, 1.5 or 500m)"),
        (["--pretrain-memory", "32GB"], "--pretrain-memory 32GB is not a Kubernetes memory quantity"),
        (["--step-cpu", "0"], "--step-cpu 0: must be more than 0"),
        (["--shm-size", "1.5Gi"], "--shm-size 1.5Gi: KFP takes memory as a whole number with an optional unit"),
        (["--pipeline-root", "/local/path"], "--pipeline-root /local/path: not an object-store URI the cluster"),
        (["--pipeline-root", "file:///tmp/root"], "--pipeline-root file:///tmp/root: not an object-store URI"),
        (
            ["--launcher", "--set", "pretrain.batch_size=511"],
            "pretrain.batch_size 511 is not divisible by 2 nodes × 1 GPU = 2 processes (the defaults of a "
            "--launcher pipeline); choose a batch size that is a multiple of 2, or another world size",
        ),
    ],
)
def test_compile_refuses_in_one_line_before_compiling(tmp_path, capsys, args, message):
    rc = main(["compile", *args, "--output", str(tmp_path / "p.yaml")])
    assert_one_line(rc, capsys.readouterr().err, message)
    assert not (tmp_path / "p.yaml").exists()


def test_compile_takes_every_accepted_form_as_given(tmp_path):
    out = tmp_path / "p.yaml"
    rc = main(
        [
            *["compile", "--output", str(out), "--step-cpu", "1.5", "--step-memory", "512Mi"],
            *["--pretrain-cpu", "500m", "--pretrain-memory", "1536Mi", "--shm-size", "2G"],
            *["--pipeline-root", "gs://bucket/root"],
        ]
    )
    assert rc == 0
    text = out.read_text()
    spec = next(yaml.safe_load_all(text))
    assert spec["defaultPipelineRoot"] == "gs://bucket/root"
    for value in ("resourceCpuRequest: '1.5'", "resourceMemoryLimit: 512Mi", "resourceCpuLimit: 500m"):
        assert value in text, value
    assert "resourceMemoryLimit: 1536Mi" in text and "sizeLimit: 2G" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--nodes", "3", "--gpus-per-node", "7"],  # the fast preset: batch 512
            "pretrain.batch_size 512 is not divisible by 3 nodes × 7 GPUs = 21 processes; choose a batch size "
            "that is a multiple of 21, or another world size",
        ),
        (
            ["--nodes", "3", "--gpus-per-node", "0", "--set", "pretrain.batch_size=64"],
            "pretrain.batch_size 64 is not divisible by 3 nodes × 1 CPU process = 3 processes",
        ),
        (["--pretrain-memory", "8GB"], "--pretrain-memory 8GB is not a Kubernetes memory quantity"),
        (["--shm-size", "lots"], "--shm-size lots is not a Kubernetes memory quantity"),
    ],
)
def test_render_job_refuses_in_one_line(capsys, args, message):
    rc = main(["render-job", "--checkpoint-uri", "s3://b/ckpt", *args])
    out = capsys.readouterr()
    assert_one_line(rc, out.err, message)
    assert out.out == ""


def test_render_job_renders_a_world_that_divides_the_batch(capsys):
    assert main(["render-job", "--checkpoint-uri", "s3://b/ckpt", "--nodes", "4", "--gpus-per-node", "8"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "TrainJob"  # 512 = 4 × 8 × 16


def _constant_channel_tarball(path, channel: int = 1, value: int = 128) -> str:
    from kubeclr.data.cifar import META, ROOT, dump_batch, dump_meta

    members = {f"{ROOT}/{META}": dump_meta(CLASS_NAMES, 10)}
    for name, (images, labels) in batch_arrays(10, seed=5).items():
        images[:, channel] = value
        members[f"{ROOT}/{name}"] = dump_batch(images, labels, batch_label=name)
    return write_tarball(path, members)


@pytest.mark.e2e
def test_a_constant_channel_ends_the_local_run_with_the_steps_own_cause(tmp_path):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    md5 = _constant_channel_tarball(tarball)
    out = tmp_path / "out"
    proc = run(
        *["run", "--local", "--preset", "smoke", "--cifar-source", str(tarball), "--cifar-md5", md5],
        *["--output-dir", str(out)],
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: local run failed: compute_stats: channel G (1) of the train split is constant (std 0: every "
        "pixel is 128); normalisation would divide by zero. Check the data (all-grey or single-colour images?)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "pretrain: config sha256" not in proc.stdout + proc.stderr  # the failing step stopped the run
    assert not (out / "metrics.json").exists()
