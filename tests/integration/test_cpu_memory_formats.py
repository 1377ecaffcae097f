"""Every model shape trains and extracts features on CPU, whatever ``pretrain.channels_last`` says.

torch 2.14.1's oneDNN NHWC convolutions segfault on CPU for some narrow models
(ResNet-18 width 8 at 64 px, the image-folder default), so CPU never uses
channels_last (:func:`kubeclr.core.device.memory_format`). This matrix holds
that up: image size × width × arch × ``channels_last``, one training step
(:func:`~kubeclr.core.train.train_simclr`) and one feature batch
(:func:`~kubeclr.eval.features.extract_features`) per case, each case in its own
process, so a crash fails that case, naming the signal, instead of the test run.

The processes fork from one forkserver that has imported torch once (a case
then starts in milliseconds, not seconds), two at a time.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import signal
import time
import traceback
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SIZES, WIDTHS, ARCHS = (32, 64, 96), (8, 16, 32, 64), ("resnet18", "resnet50")
CASES = list(itertools.product(SIZES, WIDTHS, ARCHS, (True, False)))
PARALLEL = 2  # the shared CI runner's cores
CASE_TIMEOUT_S = 240  # a hang (another way oneDNN fails) is a failure too


def case_id(size: int, width: int, arch: str, channels_last: bool) -> str:
    return f"{size}px-w{width}-{arch}-{'nhwc' if channels_last else 'nchw'}"


def run_case(size: int, width: int, arch: str, channels_last: bool, error_file: str) -> None:
    """In the case's process: one step of pretraining, one batch of features; a Python error goes to ``error_file``."""
    import torch

    from kubeclr.config import Config
    from kubeclr.core.train import train_simclr
    from kubeclr.eval.features import extract_features

    try:
        torch.set_num_threads(1)
        cfg = Config().override(
            {
                "model.arch": arch,
                "model.width": width,
                "model.proj_dim": 16,
                "augment.size": size,
                "pretrain.batch_size": 2,  # 4 views: one step
                "pretrain.epochs": 1,
                "pretrain.warmup_epochs": 0,
                "pretrain.checkpoint_every": 0,
                "pretrain.precision": "fp32",  # the smoke preset's, where the crash was seen
                "pretrain.channels_last": channels_last,
                "pretrain.device": "cpu",
            }
        )
        cpu, mean, std = torch.device("cpu"), [0.5] * 3, [0.25] * 3
        images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)  # (2, 3, S, S)
        result = train_simclr(cfg, images, mean, std, device=cpu)
        features = extract_features(result.model.encoder, images, mean, std, device=cpu, batch_size=2)
        assert features.shape == (2, result.model.encoder.feature_dim), features.shape
        assert torch.isfinite(features).all() and math.isfinite(result.history[0]["loss"])
    except BaseException:
        Path(error_file).write_text(traceback.format_exc())
        raise SystemExit(1) from None


def describe_exit(code: int | None) -> str:
    if code is None:
        return f"hung (killed after {CASE_TIMEOUT_S} s)"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[tuple, tuple[int | None, str]]:
    """``{case: (exit code or None if it hung, Python traceback or '')}`` of the selected cases, run two at a time."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "kubeclr.core.train", "kubeclr.eval.features", run_case.__module__])
    errors = tmp_path_factory.mktemp("cases")
    pending, running, done = list(selected), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            case = pending.pop(0)
            proc = ctx.Process(target=run_case, args=(*case, str(errors / f"{case_id(*case)}.txt")))
            proc.start()
            running[case] = (proc, time.monotonic())
        for case, (proc, started) in list(running.items()):
            if proc.exitcode is None and time.monotonic() - started < CASE_TIMEOUT_S:
                continue
            if proc.exitcode is None:
                proc.kill()
                proc.join()
                code = None
            else:
                code = proc.exitcode
            error = errors / f"{case_id(*case)}.txt"
            done[case] = (code, error.read_text() if error.exists() else "")
            del running[case]
        time.sleep(0.05)
    return done


@pytest.mark.parametrize("case", CASES, ids=[case_id(*c) for c in CASES])
def test_one_step_and_one_feature_batch_on_cpu(outcomes, case):
    code, error = outcomes[case]
    assert code == 0, f"{case_id(*case)}: the case's process {describe_exit(code)}\n{error}"
