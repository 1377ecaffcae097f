"""The local runner's output filter: the executor-input dump goes, everything else stays byte for byte."""

import random

import pytest

from kubeclr.cli.local_run import ExecutorInputFilter

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
