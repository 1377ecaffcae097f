"""A training process killed by a signal fails the step in one line naming the signal and what to try.

The children here really die by the signal (``os.kill`` of themselves), through
:func:`kubeclr.launch.torchrun.run_training`, the wait of the torchrun engine;
``tests/integration/test_training_signals_torchrun.py`` does it under torchrun.
"""

from __future__ import annotations

import signal
import sys

import pytest

from kubeclr.config import Config
from kubeclr.errors import UserError
from kubeclr.launch.process import TrainingKilled
from kubeclr.launch.torchrun import run_training
from kubeclr.steps import runtime


def dies_by(sig: signal.Signals) -> list[str]:
    """A child that writes a line to stderr, then kills itself with ``sig``."""
    code = f"import os, sys; sys.stderr.write('training...\\n'); sys.stderr.flush(); os.kill(os.getpid(), {int(sig)})"
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(
    ("sig", "line"),
    [
        (
            signal.SIGSEGV,
            "the training process was killed by SIGSEGV (segmentation fault); a crash in native code "
            "(torch, oneDNN or CUDA); try pretrain.compile=false and pretrain.precision=fp32, "
            "and report it with the step's log",
        ),
        (
            signal.SIGKILL,
            "the training process was killed by SIGKILL (killed); usually the out-of-memory killer; "
            "lower pretrain.batch_size or give the step more memory",
        ),
        (signal.SIGUSR1, "the training process was killed by SIGUSR1; see the log above"),
    ],
)
def test_a_child_killed_by_a_signal_is_one_line_naming_it(capfd, sig, line):
    with pytest.raises(TrainingKilled) as killed:
        run_training(dies_by(sig))
    assert str(killed.value) == line
    assert isinstance(killed.value, UserError) and killed.value.exit_code == 128 + sig  # as a shell reports it
    assert "training...\n" in capfd.readouterr().err  # the child's output passed through


def test_a_child_that_exits_with_an_error_is_not_a_signal(capfd):
    assert run_training([sys.executable, "-c", "import sys; sys.stderr.write('exitcode : -11\\n'); sys.exit(0)"]) == 0
    assert run_training([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3


def test_the_step_fails_with_that_line_and_the_signal_exit_code(tmp_path, monkeypatch):
    """Through the step runtime, as the pretrain component runs: the line is logged and left for the local runner."""
    monkeypatch.setenv(runtime.ERROR_FILE_ENV, str(tmp_path / "error.txt"))
    with pytest.raises(SystemExit) as exited:
        runtime.run_step(
            "pretrain", lambda cfg: run_training(dies_by(signal.SIGSEGV)), Config().to_dict(), run_name="t"
        )
    assert exited.value.code == 139
    line = (tmp_path / "error.txt").read_text()
    assert line.startswith("pretrain: the training process was killed by SIGSEGV (segmentation fault); ")
    assert line.count("\n") == 1
