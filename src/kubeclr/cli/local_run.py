"""Run the whole pipeline on this machine through ``kfp.local``.

The same DAG that runs on the cluster executes here with
``SubprocessRunner(use_venv=False)``: each step is a subprocess of this
Python, in topological order. Resource and Kubernetes settings are cluster-only
and ignored here. Afterwards the result files (README, "A local run writes") are copied to
``output_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from kubeclr.atomic import make_dir
from kubeclr.cli import kfp_local
from kubeclr.config import Config, check_folder_source
from kubeclr.config.data import FOLDERS
from kubeclr.config.sweep import Sweep
from kubeclr.errors import UserError
from kubeclr.report.gate import GATE_PREFIX
from kubeclr.serving import MODEL_FILES
from kubeclr.steps.runtime import ERROR_FILE_ENV
from kubeclr.storage.sources import local_source

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
RESULT_FILES = {
    "metrics.json": "metrics_json",
    "report.html": "report",
    "report.md": "summary",
    "encoder.pt": "encoder",
}
# a sweep's pipeline has the same outputs: the leaderboard in the report's place, the winner's encoder
SWEEP_FILES = {
    "leaderboard.json": "metrics_json",
    "leaderboard.html": "report",
    "leaderboard.md": "summary",
    "encoder.pt": "encoder",
}


# the report step's outputs by file name in --output-dir (the encoder is the pretrain step's)
REPORT_FILES = {"metrics.json": "metrics_json", "report.html": "html", "report.md": "summary"}


def _copy_failed_report(workdir: Path, output_dir: Path) -> bool:
    """Copy the newest run's report files from kfp.local's folders (the gate failed after writing them)."""
    runs = sorted((p for p in workdir.iterdir() if (p / "report").is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        return False
    for name, output in REPORT_FILES.items():
        src = runs[-1] / "report" / output
        if src.is_file():
            shutil.copyfile(src, output_dir / name)
    encoder = runs[-1] / "pretrain" / "encoder"
    if encoder.is_file():
        shutil.copyfile(encoder, output_dir / "encoder.pt")
    return (output_dir / "metrics.json").is_file()


def _silent_failure(exc: Exception) -> str:
    """The cause of a failure that left no line in the error file: a step killed (or kfp.local's own error)."""
    text = _ANSI.sub("", str(exc))
    task = re.search(r"Inner task failed: '([^']+)'", text)
    if task and kfp_local.KILLED_BY:
        from kubeclr.launch.process import TrainingKilled  # torch: imported only when a step died

        return f"{task.group(1)}: {TrainingKilled(kfp_local.KILLED_BY[-1], what='the step process')}"
    if task:
        return f"{task.group(1)}: the step exited without an error line (killed, e.g. out of memory?); its log is above"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def default_workdir(output_dir: Path) -> Path:
    """kfp.local's pipeline root when ``--workdir`` is not given: every step's artifacts, one folder per run."""
    return Path(output_dir) / ".kfp"


def run_local(
    cfg: Config,
    *,
    run_name: str,
    output_dir: Path,
    data_source: str | None = None,
    data_md5: str | None = None,
    checkpoint_uri: str | None = None,
    workdir: Path | None = None,
    sweep: Sweep | None = None,
) -> dict[str, Path]:
    """Run every step locally and copy the result files to ``output_dir``.

    Args:
        cfg: the resolved config (preset + overrides).
        run_name: names the run in the report, metrics and export paths.
        output_dir: receives metrics.json, report.html, report.md, encoder.pt.
        data_source: overrides ``cfg.data.source``.
        data_md5: overrides ``cfg.data.md5``.
        checkpoint_uri: overrides ``cfg.storage.checkpoint_uri``.
        workdir: kfp.local's pipeline root (default ``output_dir/.kfp``).
        sweep: run the sweep variant: its trials one after another (``parallelism`` applies on a
            cluster), then the leaderboard; ``output_dir`` receives leaderboard.json, .html, .md and
            the winner's encoder.pt.

    Returns:
        ``{file name: path}`` of the copied results.

    Raises:
        UserError: a step failed; the message is that step's own one-line cause.
    """
    from kfp import local

    from kubeclr.launch.settings import LaunchSettings
    from kubeclr.pipelines.simclr import CompileOptions, build_pipeline

    for flag, key, value in (
        ("--data-source", "data.source", data_source),
        ("--data-md5", "data.md5", data_md5),
        ("--checkpoint-uri", "storage.checkpoint_uri", checkpoint_uri),
    ):
        if value is not None:
            cfg = cfg.override({key: value}, origin=flag)
    check_folder_source(cfg.data)  # an image folder needs a source of its own: say so before kfp.local starts
    if not cfg.storage.mirror_uri:  # (a mirror may hold a copy of a tarball that is gone)
        # a missing local tarball or folder fails now, not after kfp.local has started
        local_source(cfg.data.source, folder_ok=cfg.data.format in FOLDERS)
    output_dir = Path(output_dir)
    workdir = Path(workdir) if workdir else default_workdir(output_dir)
    for flag, folder in (("--output-dir", output_dir), ("--workdir", workdir)):
        make_dir(flag, folder)

    kfp_local.install()
    kfp_local.KILLED_BY.clear()  # signals of this run only
    # Cluster-only settings are ignored here by design; say so once, not per task.
    warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner.*")
    warnings.filterwarnings("ignore", message=r".*custom or non-Python base image.*")
    log.info("local run: GPU requests, tolerations, secrets and retries apply on a cluster only")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir), raise_on_error=True)
    # no retries locally: a failure here is a bug or bad input, not a preempted pod
    # --checkpoint-uri is used as given, so running the same command again resumes
    pipeline = build_pipeline(
        cfg,
        CompileOptions(
            launch=LaunchSettings(gpu_toleration=False, secret_name=""),
            extract_gpu=False,
            pretrain_retries=0,
            checkpoints_per_run=False,
        ),
        dataclasses.replace(sweep, parallelism=1) if sweep else None,
    )

    with tempfile.TemporaryDirectory() as tmp:
        error_file = Path(tmp) / "error.txt"
        os.environ[ERROR_FILE_ENV] = str(error_file)
        os.environ.setdefault("KUBECLR_PROGRESS", "1" if sys.stderr.isatty() else "0")
        try:
            task = pipeline(run_name=run_name)
        except Exception as exc:  # kfp.local raises RuntimeError naming the failed task
            cause = error_file.read_text().strip() if error_file.exists() else _silent_failure(exc)
            if cause.startswith(f"regression_gate: {GATE_PREFIX}"):  # the report exists: hand it over, then fail
                copied = _copy_failed_report(workdir, output_dir)
                cause += f" (report, summary and metrics.json in {output_dir})" if copied else ""
            raise UserError(f"local run failed: {cause}") from None
        finally:
            os.environ.pop(ERROR_FILE_ENV, None)

    files = {}
    sources = {
        name: Path(task.outputs[output].path) for name, output in (SWEEP_FILES if sweep else RESULT_FILES).items()
    }
    if not sweep:  # the exported models and their card: the files of the `model` folder (no classifier unlabelled)
        model = Path(task.outputs["model"].path)
        sources |= {name: model / name for name in MODEL_FILES if (model / name).is_file()}
        for name in set(MODEL_FILES) - set(sources):  # an earlier run's classifier beside a card without one
            (output_dir / name).unlink(missing_ok=True)
    for name, src in sources.items():
        dest = output_dir / name
        shutil.copyfile(src, dest)
        files[name] = dest
    return files
