"""kubeclr.core.compiled: counted graphs, recompiles, graph breaks, the eager fallback; kubeclr.core.train.StepTimer.

Dynamo's ``eager`` backend keeps these tests fast: it traces exactly as
Inductor would be handed the graphs, without generating code.
"""

from __future__ import annotations

import logging
import time

import pytest
import torch
from torch import nn

from kubeclr.core import compiled
from kubeclr.core.compiled import Compiled
from kubeclr.core.train import StepTimer
from kubeclr.storage.store import LocalStore

CPU = torch.device("cpu")


class Breaks(nn.Module):
    """A forward with a graph break in the middle (a Python side effect Dynamo cannot trace)."""

    def forward(self, x):
        y = x.relu()
        torch._dynamo.graph_break()
        return y + 1


def _failing_backend(gm, example_inputs):
    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_one_graph_no_recompile_for_static_shapes():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    fn = Compiled(model, CPU, enabled=True, backend="eager")
    x = torch.randn(5, 4)
    for _ in range(3):
        assert torch.allclose(fn(x), model(x))
    assert fn.stats() == {"compiled": True, "graphs": 1, "graph_breaks": 0, "recompiles": 0, "fallback": None}


def test_a_new_shape_after_the_first_step_is_a_counted_logged_recompile(caplog):
    fn = Compiled(nn.Linear(4, 3), CPU, enabled=True, backend="eager")
    fn(torch.randn(5, 4))
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.compiled"):
        fn(torch.randn(7, 4))
    assert fn.recompiles == 1 and fn.graphs == 2
    assert "recompiled" in caplog.text


def test_graph_breaks_are_counted():
    fn = Compiled(Breaks(), CPU, enabled=True, backend="eager")
    x = torch.randn(3)
    assert torch.equal(fn(x), x.relu() + 1)
    assert fn.graph_breaks >= 1 and fn.graphs == 2


def test_a_toolchain_that_cannot_compile_falls_back_to_eager_with_one_warning(caplog):
    model = nn.Linear(4, 3)
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.compiled"):
        fn = Compiled(model, CPU, enabled=True, backend=_failing_backend)
        x = torch.randn(2, 4)
        out = fn(x)
        fn(x)
    assert torch.equal(out, model(x))
    assert fn.stats()["compiled"] is False and "Failed to find C compiler" in fn.fallback
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "eager" in warnings[0].getMessage()


def test_a_model_that_fails_to_compile_runs_eagerly(monkeypatch, caplog):
    model = nn.Linear(4, 3)
    fn = Compiled(model, CPU, enabled=True, backend="eager")  # the probe passes
    fn._backend = _failing_backend  # then the model's own compilation fails
    x = torch.randn(2, 4)
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.compiled"):
        assert torch.equal(fn(x), model(x))
    assert "compiling the model failed" in fn.fallback and "eager" in caplog.text
    assert torch.equal(fn(x), model(x))


def test_errors_of_the_model_itself_are_not_swallowed():
    class Bad(nn.Module):
        def forward(self, x):
            return x @ torch.ones(5, 5)  # (2, 4) @ (5, 5): a real shape error

    fn = Compiled(Bad(), CPU, enabled=False)
    with pytest.raises(RuntimeError):
        fn(torch.randn(2, 4))


def test_disabled_calls_the_module_and_compiles_nothing():
    model = nn.Linear(4, 3)
    fn = Compiled(model, CPU, enabled=False)
    x = torch.randn(2, 4)
    assert torch.equal(fn(x), model(x))
    assert fn.stats() == {"compiled": False, "graphs": 0, "graph_breaks": 0, "recompiles": 0, "fallback": None}


def test_probe_reports_why_not():
    assert compiled.probe(CPU, "eager") is None
    assert "Failed to find C compiler" in compiled.probe(CPU, _failing_backend)


def test_cache_tag_names_the_torch_build_and_is_a_safe_key():
    tag = compiled.cache_tag(CPU)
    assert torch.__version__.split("+")[0] in tag and "/" not in tag and " " not in tag


def test_no_cache_in_the_store_loads_nothing(tmp_path):
    assert compiled.load_cache(LocalStore(tmp_path), CPU) is False
    assert compiled.load_cache(None, CPU) is False


def test_a_corrupt_cache_is_ignored_with_a_warning(tmp_path, caplog):
    store = LocalStore(tmp_path)
    store.write_bytes(compiled.CACHE_KEY.format(tag=compiled.cache_tag(CPU)), b"not a cache")
    with caplog.at_level(logging.WARNING, logger="kubeclr.core.compiled"):
        assert compiled.load_cache(store, CPU) is False
    assert "ignoring the compile cache" in caplog.text


def test_step_timer_on_cpu_measures_each_step():
    timer = StepTimer(CPU, 3)
    timer.start()
    for pause in (0.01, 0.03, 0.0):
        time.sleep(pause)
        timer.mark()
    seconds = timer.seconds()
    assert len(seconds) == 3
    assert seconds[0] >= 0.01 and seconds[1] >= 0.03 and seconds[1] > seconds[2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_step_timer_on_cuda_times_the_gpu_not_the_enqueue():
    x = torch.randn(4096, 4096, device="cuda")
    timer = StepTimer(torch.device("cuda"), 2)
    timer.start()
    t0 = time.perf_counter()
    for _ in range(20):
        x = x @ x / 4096
    timer.mark()
    enqueue = time.perf_counter() - t0
    timer.mark()  # an empty step
    gpu, empty = timer.seconds()
    assert gpu > enqueue / 2 and empty < gpu
