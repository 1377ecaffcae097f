"""Device rules: channels_last on CUDA only, and pretrain.precision honoured on CPU (bf16) or refused (fp16)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from torch import nn

from kubeclr.config import Config
from kubeclr.core import device as device_rules
from kubeclr.core.device import autocast, memory_format
from kubeclr.core.train import train_simclr
from kubeclr.errors import ConfigError
from tests.unit.test_train import structured_images, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("wanted", [True, False])
def test_channels_last_only_on_cuda_and_only_when_wanted(wanted):
    assert memory_format(CPU, wanted) == torch.contiguous_format  # oneDNN's NHWC kernels crash on CPU: never
    assert memory_format(CUDA, wanted) == (torch.channels_last if wanted else torch.contiguous_format)


def test_cpu_says_once_that_it_does_not_use_channels_last(caplog):
    device_rules._say_no_channels_last_on_cpu.cache_clear()
    with caplog.at_level(logging.INFO, logger="kubeclr"):
        memory_format(CPU, wanted=False)
        assert not caplog.records  # not asked for: nothing to say
        for _ in range(3):
            memory_format(CPU, wanted=True)
    said = [r for r in caplog.records if "channels_last is not used on CPU" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO


def test_autocast_on_cpu_is_bf16_or_off_and_refuses_fp16():
    layer = nn.Linear(4, 4)
    with autocast(CPU, "bf16"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert layer(torch.ones(2, 4)).dtype == torch.float32
    with pytest.raises(ConfigError, match=r"^pretrain.precision=fp16 needs a CUDA GPU; on CPU use bf16 or fp32$"):
        autocast(CPU, "fp16")


def tiny(**overrides) -> Config:
    return tiny_config(**{"pretrain.epochs": 12, "pretrain.checkpoint_every": 0, "pretrain.seed": 2, **overrides})


def striped_images(n: int = 64) -> torch.Tensor:
    return structured_images(n=n, seed=2)[0]  # (n, 3, 16, 16) uint8, four classes


@contextlib.contextmanager
def conv_calls():
    """Every Conv2d call made inside, as ``(output dtype, input was channels_last)``."""
    calls: list[tuple[torch.dtype, bool]] = []

    def hook(module, args, output):
        if isinstance(module, nn.Conv2d) and torch.is_grad_enabled():  # training steps, not evaluation
            x = args[0]
            nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            calls.append((output.dtype, nhwc))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_cpu_training_runs_under_the_configured_precision_in_nchw_and_the_loss_falls(precision, dtype):
    cfg = tiny(**{"pretrain.precision": precision, "pretrain.channels_last": True})
    with conv_calls() as calls:
        result = train_simclr(cfg, striped_images(), MEAN, STD, device=CPU)
    assert calls and {c[0] for c in calls} == {dtype}  # every convolution of every step
    assert not any(nhwc for _, nhwc in calls)  # channels_last asked for, NCHW used
    weight = result.model.encoder.layer1[0].conv1.weight  # (C, C, 3, 3)
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    losses = [r["loss"] for r in result.history]
    assert all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(2 * 16 - 1), abs=0.3)  # chance level: log(2N - 1)
    assert np.mean(losses[:3]) - np.mean(losses[-3:]) > 0.1
    assert result.summary["precision"] == precision  # metrics.json's pretrain.precision


def test_fp16_on_cpu_fails_before_training_in_one_line():
    with pytest.raises(ConfigError, match=r"^pretrain.precision=fp16 needs a CUDA GPU"):
        train_simclr(tiny(**{"pretrain.precision": "fp16"}), striped_images(n=16), MEAN, STD, device=CPU)


CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NVIDIA_VISIBLE_DEVICES": "GPU-0a1b"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is unusable")
def test_a_pod_given_a_gpu_it_cannot_use_fails_in_one_line_naming_what_it_found():
    with pytest.raises(ConfigError) as err:
        device_rules.require_given_gpus(1, "auto", CLUSTER)
    text = str(err.value)
    assert "\n" not in text and "given 1 GPU(s) but CUDA is unusable" in text
    assert f"torch {torch.__version__}" in text and "NVIDIA_VISIBLE_DEVICES=GPU-0a1b" in text and "driver" in text


@pytest.mark.parametrize(
    "gpus, setting, env",
    [(1, "auto", {}), (0, "auto", CLUSTER), (1, "cpu", CLUSTER)],
    ids=["local run", "no GPU requested", "device cpu on purpose"],
)
def test_cpu_training_stays_allowed_where_no_gpu_was_given_or_cpu_was_asked_for(gpus, setting, env):
    device_rules.require_given_gpus(gpus, setting, env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is unusable")
def test_the_pretrain_step_refuses_before_any_work(tmp_path, monkeypatch):
    from kubeclr.steps import pretrain

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(ConfigError, match="CUDA is unusable"):
        pretrain.run(Config(), tmp_path / "missing", tmp_path / "missing", tmp_path / "e", tmp_path / "h", run_name="r")
    assert not (tmp_path / "e").exists() and not (tmp_path / "h").exists()


def test_a_cpu_is_described_by_its_model_and_usable_cpus(monkeypatch):
    monkeypatch.setattr(device_rules, "cpu_model", lambda: "AMD EPYC 7B13")
    monkeypatch.setattr(device_rules, "usable_cpus", lambda: 2)
    assert device_rules.describe_device(CPU) == "cpu: AMD EPYC 7B13 (2 cores)"
