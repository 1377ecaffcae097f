"""Run the whole pipeline on this machine through ``kfp.local``.

The same DAG that runs on the cluster executes here with
``SubprocessRunner(use_venv=False)``: each step is a subprocess of this
Python, in topological order. Resource and Kubernetes settings are cluster-only
and ignored here. Afterwards the result files (README, "A local run writes") are copied to
``output_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from kubeclr.atomic import make_dir
from kubeclr.config import Config, check_folder_source
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


class ExecutorInputFilter:
    """Drops the KFP executor's ``Got executor_input:`` JSON dump (~70 lines per step) from a step's output.

    Everything else passes through as it arrives, carriage returns included, so a
    progress bar still redraws in place. Only a line that could still turn out to
    be the dump's first line is held back until its end is seen.
    """

    MARKER = b"Got executor_input:"
    PREFIX = b"[KFP Executor"

    def __init__(self) -> None:
        self._pending = b""  # start of a line that may be the marker line
        self._mid_line = False  # inside a line already passed through
        self._skipping = False  # inside the JSON dump

    def feed(self, chunk: bytes) -> bytes:
        out = []
        data = self._pending + chunk
        self._pending = b""
        while data:
            end = data.find(b"\n")
            line, rest = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
            complete = end >= 0
            if self._skipping:
                if not complete:
                    self._pending = line  # its end decides whether the dump ends here
                elif line.rstrip(b"\r\n") == b"}":
                    self._skipping = False
            elif self._mid_line:
                out.append(line)
                self._mid_line = not complete
            elif complete:
                if line.startswith(self.PREFIX) and self.MARKER in line:
                    self._skipping = True
                else:
                    out.append(line)
            elif self.PREFIX.startswith(line[: len(self.PREFIX)]):
                self._pending = line  # may be the marker line: wait for its end
            else:
                out.append(line)
                self._mid_line = True
            data = rest
        return b"".join(out)

    def flush(self) -> bytes:
        pending, self._pending = self._pending, b""
        return b"" if self._skipping else pending


def _stream_raw_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """Like kfp.local's runner, but passes bytes through unchanged (less the executor-input dump).

    kfp.local reads step output line by line in text mode, which turns every
    carriage return of a progress bar into a new line; copying raw bytes keeps
    the pretraining bar a bar.
    """
    env = {**os.environ, **(env_vars or {})}
    quiet = ExecutorInputFilter()
    with subprocess.Popen(full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        assert proc.stdout is not None
        out = sys.stdout.buffer
        while chunk := proc.stdout.read1(4096):
            out.write(quiet.feed(chunk))
            out.flush()
        out.write(quiet.flush())
        out.flush()
        rc = proc.wait()
    if rc < 0:  # killed by a signal: no error line can have been written; remember which signal
        _KILLED_BY.append(-rc)
    return rc


_KILLED_BY: list[int] = []  # signals that ended step processes of this local run, in order


def _install_raw_streaming() -> None:
    from kfp.local import subprocess_task_handler

    if hasattr(subprocess_task_handler, "run_local_subprocess"):
        subprocess_task_handler.run_local_subprocess = _stream_raw_subprocess


def _install_loop_inputs_fix() -> None:
    """Keep a ParallelFor body's inputs from upstream tasks' outputs as they are (kfp.local 2.17).

    kfp.local replaces *every* parameter that a loop's body takes from another task's output with
    the loop item, so the trials would receive ``{"index", "overrides"}`` as their config. The
    sweep's items are a constant list, never a task's output, so no such input is the loop item:
    restore them all. A cluster's KFP backend has no such problem.
    """
    from kfp.local.orchestrator import task_spec_utils

    original = task_spec_utils.create_parameter_loop_iteration_task_spec
    if getattr(original, "kubeclr_fixed", False):
        return

    def create(task_spec, loop_item, loop_task_name):
        iteration = original(task_spec, loop_item, loop_task_name)
        if task_spec.parameter_iterator.items.HasField("raw"):
            for name, given in task_spec.inputs.parameters.items():
                if given.HasField("task_output_parameter"):
                    iteration.inputs.parameters[name].CopyFrom(given)
        return iteration

    create.kubeclr_fixed = True
    task_spec_utils.create_parameter_loop_iteration_task_spec = create


def typed_outputs(outputs: dict) -> dict:
    """A task's outputs as kfp.local logs them, with a resolved config shown in the schema's types.

    The config crosses tasks as a protobuf Struct, where every number is a
    double: logged as it arrives it reads ``epochs: 6.0``. Steps re-type it
    when they parse it (:meth:`Config.from_dict`); the log does the same.
    """
    sections = {f.name for f in dataclasses.fields(Config)}
    typed = {}
    for name, value in outputs.items():
        if isinstance(value, dict) and value and set(value) <= sections:
            with contextlib.suppress(UserError):  # not a whole config: log it as it is
                value = Config.from_dict(value).to_dict()
        typed[name] = value
    return typed


def _install_typed_output_log() -> None:
    from kfp.local import logging_utils

    original = logging_utils.make_log_lines_for_outputs
    if getattr(original, "kubeclr_typed", False):
        return

    def make_lines(outputs: dict) -> list[str]:
        return original(typed_outputs(outputs))

    make_lines.kubeclr_typed = True
    logging_utils.make_log_lines_for_outputs = make_lines


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
    if task and _KILLED_BY:
        from kubeclr.launch.process import TrainingKilled  # torch: imported only when a step died

        return f"{task.group(1)}: {TrainingKilled(_KILLED_BY[-1], what='the step process')}"
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
    cifar_source: str | None = None,
    cifar_md5: str | None = None,
    checkpoint_uri: str | None = None,
    workdir: Path | None = None,
    sweep: Sweep | None = None,
) -> dict[str, Path]:
    """Run every step locally and copy the result files to ``output_dir``.

    Args:
        cfg: the resolved config (preset + overrides).
        run_name: names the run in the report, metrics and export paths.
        output_dir: receives metrics.json, report.html, report.md, encoder.pt.
        cifar_source: overrides ``cfg.data.source``.
        cifar_md5: overrides ``cfg.data.md5``.
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
        ("--cifar-source", "data.source", cifar_source),
        ("--cifar-md5", "data.md5", cifar_md5),
        ("--checkpoint-uri", "storage.checkpoint_uri", checkpoint_uri),
    ):
        if value is not None:
            cfg = cfg.override({key: value}, origin=flag)
    check_folder_source(cfg.data)  # an image folder needs a source of its own: say so before kfp.local starts
    if not cfg.storage.mirror_uri:  # (a mirror may hold a copy of a tarball that is gone)
        # a missing local tarball or folder fails now, not after kfp.local has started
        local_source(cfg.data.source, folder_ok=cfg.data.format == "imagefolder")
    output_dir = Path(output_dir)
    workdir = Path(workdir) if workdir else default_workdir(output_dir)
    for flag, folder in (("--output-dir", output_dir), ("--workdir", workdir)):
        make_dir(flag, folder)

    _install_raw_streaming()
    _install_loop_inputs_fix()
    _install_typed_output_log()
    _KILLED_BY.clear()  # signals of this run only
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
    if not sweep:  # the exported models and their card: the files of the `model` folder
        sources |= {name: Path(task.outputs["model"].path) / name for name in MODEL_FILES}
    for name, src in sources.items():
        dest = output_dir / name
        shutil.copyfile(src, dest)
        files[name] = dest
    return files
