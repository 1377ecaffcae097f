"""The local runner's output filter: the executor-input dump goes, everything else stays byte for byte."""

import random

import pytest

from kubeclr.cli.kfp_local import ExecutorInputFilter

DUMP = (
    b'[KFP Executor 2026-11-28 13:14:32,735 INFO]: Got executor_input:\n{\n    "inputs": {\n'
    b'        "parameterValues": {"x": 1}\n    }\n}\n'
)
BEFORE = b'[KFP Executor 2026-11-28 13:14:32,734 INFO]: Loading KFP component "pretrain"\n'
AFTER = (
    b"13:14:38 INFO kubeclr.steps.pretrain: pretraining resnet18 on cpu\n"
    b"epoch 1/6:  37%|###7      | 3/8\repoch 1/6:  75%|#######5  | 6/8\repoch 1/6: 100%|##########| 8/8\n"
    b"{not the dump}\n[KFP Executor x]: Wrote executor output\n}\n"
)


def run(stream: bytes, sizes) -> bytes:
    quiet, out, i = ExecutorInputFilter(), [], 0
    for size in sizes:
        out.append(quiet.feed(stream[i : i + size]))
        i += size
    out.append(quiet.feed(stream[i:]))
    out.append(quiet.flush())
    return b"".join(out)


@pytest.mark.parametrize("seed", range(20))
def test_dump_is_dropped_whatever_the_chunking(seed):
    rng = random.Random(seed)
    stream = BEFORE + DUMP + AFTER
    sizes = [rng.randint(1, 9) for _ in range(len(stream) // 3)]
    assert run(stream, sizes) == BEFORE + AFTER


def test_progress_bar_redraws_pass_through_at_once():
    quiet = ExecutorInputFilter()
    assert quiet.feed(b"epoch 1/6:  37%|###7") == b"epoch 1/6:  37%|###7"  # not held until the newline
    assert quiet.feed(b"\repoch 1/6:  75%") == b"\repoch 1/6:  75%"


def test_a_line_that_may_be_the_marker_waits_for_its_end():
    quiet = ExecutorInputFilter()
    assert quiet.feed(b"[KFP Exec") == b""
    assert quiet.feed(b"utor t INFO]: Loading\n") == b"[KFP Executor t INFO]: Loading\n"
    assert quiet.feed(b"[KFP") == b"" and quiet.flush() == b"[KFP"  # an unfinished last line is kept


def test_a_step_that_died_without_an_error_line_is_named_in_the_last_line():
    """kfp.local's own message (colour codes and all) when a step was killed before it could write its cause."""
    from kubeclr.cli.local_run import _silent_failure

    killed = RuntimeError(
        "Pipeline \x1b[95m'simclr'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. "
        "Inner task failed: \x1b[96m'pretrain'\x1b[0m."
    )
    assert _silent_failure(killed) == (
        "pretrain: the step exited without an error line (killed, e.g. out of memory?); its log is above"
    )
    assert _silent_failure(RuntimeError("\x1b[91mno runner\x1b[0m\nmore")) == "no runner"


def test_a_step_killed_by_a_signal_is_named_with_the_signal(monkeypatch, capfdbinary):
    """A real child that segfaults under the local runner's streamer: the last line names SIGSEGV."""
    import sys

    from kubeclr.cli import kfp_local, local_run

    monkeypatch.setattr(kfp_local, "KILLED_BY", [])
    segv = "import os, signal; print('training...', flush=True); os.kill(os.getpid(), signal.SIGSEGV)"
    assert kfp_local.stream_raw_subprocess([sys.executable, "-c", segv]) == -11
    assert b"training..." in capfdbinary.readouterr().out
    killed = RuntimeError("Inner task failed: 'pretrain'")
    line = local_run._silent_failure(killed)
    assert line.startswith("pretrain: the step process was killed by SIGSEGV (segmentation fault);"), line
    assert "\n" not in line
