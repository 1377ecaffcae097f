"""Device selection and the CPU channels_last guard."""

from __future__ import annotations

import copy

import pytest
import torch

from kubeclr.config import ModelConfig
from kubeclr.core.device import channels_last_ok
from kubeclr.core.model import build_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize(("width", "ok"), [(4, False), (6, False), (12, False), (8, True), (32, True)])
def test_cpu_channels_last_only_where_every_1x1_conv_has_multiples_of_8_channels(arch, width, ok):
    # width 4 and 6 crash torch 2.14.1's oneDNN 1×1 NHWC backward-weights kernel on CPU
    model = build_model(ModelConfig(arch=arch, width=width))
    assert channels_last_ok(model, CPU) is ok
    assert channels_last_ok(model, CUDA) is True  # only the device type is looked at


def test_channels_last_step_matches_the_contiguous_step_on_cpu(one_thread):
    torch.manual_seed(0)
    nchw = build_model(ModelConfig(width=8, proj_dim=16))
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    exact = copy.deepcopy(nchw).double()
    x = torch.randn(32, 3, 32, 32)
    for model, inp in ((nchw, x), (nhwc, x.contiguous(memory_format=torch.channels_last)), (exact, x.double())):
        _, z = model(inp)
        z.square().mean().backward()
    for (name, p), q, r in zip(nhwc.named_parameters(), nchw.parameters(), exact.parameters()):
        ref = r.grad.float()
        scale = ref.norm() + 1e-12
        # fp32 oneDNN kernels: both layouts within 2% of the float64 gradient
        assert (p.grad - ref).norm() / scale < 2e-2, name
        assert (q.grad - ref).norm() / scale < 2e-2, name
