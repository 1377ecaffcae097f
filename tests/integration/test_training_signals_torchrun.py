"""The torchrun engine names the signal that killed a worker (torchrun itself just exits 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubeclr.config import Config
from kubeclr.launch.process import TrainFiles, TrainingKilled
from kubeclr.launch.torchrun import Torchrun

pytestmark = pytest.mark.integration


class CrashingWorker(Torchrun):
    """The engine as it is, with a worker that segfaults in place of kubeclr.launch.entry."""

    def __init__(self, script: Path) -> None:
        super().__init__(nproc=1)
        self.script = script

    def command(self, config_file, files, cfg, run_name):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(self.script)]


def test_a_worker_killed_by_sigsegv_fails_the_engine_naming_the_signal(tmp_path, capfd):
    script = tmp_path / "worker.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    files = TrainFiles(tmp_path / "train.npz", tmp_path / "stats.json", tmp_path / "e.pt", tmp_path / "h.json")
    with pytest.raises(TrainingKilled, match=r"^the training process was killed by SIGSEGV \(segmentation fault\); "):
        CrashingWorker(script).train(Config(), files, run_name="t")
    assert "Signal 11 (SIGSEGV) received by PID" in capfd.readouterr().err  # torchrun's own report, passed through
