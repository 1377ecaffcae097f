"""The torchrun engine: one process per GPU of this pod (``torchrun --standalone``)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from kubeclr.atomic import read_json, write_json
from kubeclr.cluster.pods import torchrun_flags
from kubeclr.config import Config, config_digest
from kubeclr.errors import UserError
from kubeclr.launch.process import TrainFiles, TrainingKilled

log = logging.getLogger(__name__)

# torchrun's report of a failed worker ("exitcode  : -11 (pid: 1234)  (SIGSEGV)"): negative = killed by that signal
_WORKER_SIGNAL = re.compile(rb"exitcode\s*:\s*-(\d+)")
TAIL_BYTES = 64 * 1024  # torchrun's report is the last few KiB of its stderr


class Torchrun:
    """Run :mod:`kubeclr.launch.entry` under torchrun with ``nproc`` processes and wait.

    The resolved config travels as one JSON file with its digest; rank 0 writes
    the outputs to the step's own paths.
    """

    name = "torchrun"

    def __init__(self, nproc: int) -> None:
        self.nproc = nproc

    def command(self, config_file: Path, files: TrainFiles, cfg: Config, run_name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *torchrun_flags(self.nproc),
            "-m",
            "kubeclr.launch.entry",
            "--config",
            str(config_file),
            "--config-sha256",
            config_digest(cfg),
            "--train",
            str(files.train),
            "--stats",
            str(files.stats),
            "--encoder-out",
            str(files.encoder_out),
            "--history-out",
            str(files.history_out),
            "--checkpoint-uri",
            files.checkpoints,
            "--run-name",
            run_name,
        ]

    def train(self, cfg: Config, files: TrainFiles, *, run_name: str) -> dict:
        with tempfile.TemporaryDirectory(prefix="kubeclr-ddp-") as tmp:
            config_file = Path(tmp) / "config.json"
            write_json(config_file, cfg.to_dict())
            cmd = self.command(config_file, files, cfg, run_name)
            log.info("launching %d training processes: %s", self.nproc, " ".join(cmd))
            rc = run_training(cmd)
        if rc != 0:
            raise UserError(
                f"distributed pretraining failed: torchrun exited with code {rc} (see the ranks' log above)"
            )
        return read_json(files.history_out)["summary"]


def run_training(cmd: Sequence[str]) -> int:
    """Run ``cmd`` (torchrun, or one training process) and wait; its stderr passes through unchanged.

    Returns:
        The exit code, when no process was killed by a signal.

    Raises:
        TrainingKilled: ``cmd`` itself, or a worker that torchrun reports, was killed by a signal.
    """
    tail = b""
    out = getattr(sys.stderr, "buffer", None)
    with subprocess.Popen(list(cmd), stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(TAIL_BYTES):
            if out is not None:
                out.write(chunk)
                out.flush()
            else:  # a text-only stderr (a test's capture)
                sys.stderr.write(chunk.decode(errors="replace"))
            tail = (tail + chunk)[-TAIL_BYTES:]
        rc = proc.wait()
    if rc < 0:
        raise TrainingKilled(-rc)
    worker = _WORKER_SIGNAL.search(tail) if rc else None
    if worker:
        raise TrainingKilled(int(worker.group(1)))
    return rc
