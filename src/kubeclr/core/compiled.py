"""``torch.compile`` for pretraining: static shapes, counted graphs, and a fallback that never kills a run.

Shapes in the loop are static (every batch has ``batch_size`` rows: the last
partial batch is dropped), so the model is compiled with ``dynamic=False``.
Everything Dynamo hands to the backend passes through :class:`Compiled`'s
counting backend (which then calls Inductor as ``torch.compile`` would): the
graphs compiled during the first step are the program; any graph compiled
after it is a recompile, and Dynamo's own ``graph_break`` counter gives the
breaks. Both are logged and land in the run's summary, so a slow compiled run
says why.

Compilation needs a working toolchain where the step runs: Triton builds a C
launcher with the system compiler on CUDA, Inductor compiles C++ on CPU. A
pod whose image lacks it must not die at step 1 of a multi-hour run, so
:func:`probe` compiles a two-op function on the device first, and a model
whose own compilation fails is run eagerly: each time with one warning that
says why.

The compile cache (Inductor's kernels, AOTAutograd's graphs) can be saved as
one blob (``torch.compiler.save_cache_artifacts``) next to the checkpoints,
so a retried or resumed task loads its kernels instead of compiling again.
Unlike a checkpoint (read with ``weights_only=True``), that blob is pickled
code that will run: it is read only from the run's own checkpoint prefix, and
``pretrain.compile_cache=false`` turns it off where others can write there.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import torch
from torch import nn

from kubeclr.core.checkpoint import Store
from kubeclr.cpus import cpu_model

log = logging.getLogger(__name__)

CACHE_KEY = "compile-cache/{tag}.bin"


def _first_line(exc: BaseException) -> str:
    """The root cause in one line: Dynamo wraps a backend's error (``BackendCompilerFailed``) around the real one."""
    seen = {id(exc)}
    while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None and id(inner) not in seen:
        exc = inner
        seen.add(id(exc))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def probe(device: torch.device, backend: str | Callable = "inductor") -> str | None:
    """Compile and run a two-op function on ``device``; None if that works, else why not (one line)."""
    try:
        fn = torch.compile(lambda x: (x * 2 + 1).relu(), backend=backend, dynamic=False)
        fn(torch.ones(8, device=device))
    except Exception as exc:
        return _first_line(exc)
    return None


class Compiled:
    """A module called through ``torch.compile(dynamic=False)``, eager if compiling fails.

    Args:
        module: what to compile (the possibly DDP-wrapped model).
        device: where it runs (the toolchain :func:`probe` checks).
        enabled: ``pretrain.compile``; False calls ``module`` directly.
        backend: the compiler backend behind the counter (tests inject failing ones).

    Attributes:
        graphs: graphs compiled so far; ``recompiles``: those compiled after the first step.
        fallback: why the module runs eagerly although compilation was asked for, else None.
    """

    def __init__(
        self, module: nn.Module, device: torch.device, *, enabled: bool, backend: str | Callable = "inductor"
    ) -> None:
        self.module, self.enabled = module, enabled
        self.graphs = self.recompiles = 0
        self.fallback: str | None = None
        self._first_done = False
        self._breaks0 = _graph_breaks()
        self._compiled: Callable | None = None
        if not enabled:
            return
        reason = probe(device, backend)
        if reason is not None:
            self._eager(f"cannot compile on {device.type} here ({reason})")
            return
        self._backend = _resolve(backend)
        self._compiled = torch.compile(module, backend=self._count, dynamic=False)

    def _count(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs += 1
        if self._first_done:
            self.recompiles += 1
            log.warning("torch.compile recompiled the model (graph %d): shapes or guards changed", self.graphs)
        return self._backend(gm, example_inputs)

    def _eager(self, why: str) -> None:
        self.fallback, self._compiled = why, None
        log.warning("torch.compile is off for this run: %s; training continues in eager mode (slower)", why)

    def __call__(self, *args: Any) -> Any:
        if self._compiled is None:
            return self.module(*args)
        if self._first_done:
            return self._compiled(*args)
        try:
            out = self._compiled(*args)
        except Exception as exc:  # compilation happens before any kernel runs: eager is safe to retry
            if not _is_compile_error(exc):
                raise
            self._eager(f"compiling the model failed ({_first_line(exc)})")
            return self.module(*args)
        self._first_done = True
        return out

    @property
    def graph_breaks(self) -> int:
        return _graph_breaks() - self._breaks0

    def stats(self) -> dict[str, Any]:
        """``{"compiled", "graphs", "graph_breaks", "recompiles", "fallback"}`` for the run's summary."""
        return {
            "compiled": self._compiled is not None,
            "graphs": self.graphs,
            "graph_breaks": self.graph_breaks,
            "recompiles": self.recompiles,
            "fallback": self.fallback,
        }


def _resolve(backend: str | Callable) -> Callable:
    if callable(backend):
        return backend
    from torch._dynamo import lookup_backend

    return lookup_backend(backend)


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


def _is_compile_error(exc: BaseException) -> bool:
    """Errors of the compiler stack (Dynamo, Inductor, Triton, the C toolchain), not of the model's maths."""
    from torch._dynamo.exc import BackendCompilerFailed, TorchDynamoException

    if isinstance(exc, (BackendCompilerFailed, TorchDynamoException)):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("torch._inductor", "torch._dynamo", "triton", "torch._subclasses"))


def cache_tag(device: torch.device) -> str:
    """Compiled kernels are valid for one torch build and one device model: the cache key says both."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{cpu_model()}"
    raw = f"torch-{torch.__version__}-{name}"
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in raw)


def load_cache(store: Store | None, device: torch.device) -> bool:
    """Load the compile cache saved next to the checkpoints, if any. Returns whether one was loaded."""
    key = CACHE_KEY.format(tag=cache_tag(device))
    if store is None or not store.exists(key):
        return False
    t0 = time.perf_counter()
    try:
        info = torch.compiler.load_cache_artifacts(store.read_bytes(key))  # None: torch could not read it
    except Exception as exc:
        info, why = None, _first_line(exc)
    else:
        why = "not a cache this torch can read"
    if info is None:
        log.warning("ignoring the compile cache %s/%s: %s", store.uri, key, why)
        return False
    log.info("loaded the compile cache %s/%s in %.1fs", store.uri, key, time.perf_counter() - t0)
    return True


def save_cache(store: Store | None, device: torch.device) -> bool:
    """Save this process's compile cache next to the checkpoints. Returns whether anything was written."""
    if store is None:
        return False
    artifacts = torch.compiler.save_cache_artifacts()
    if not artifacts or not artifacts[0]:
        return False
    key = CACHE_KEY.format(tag=cache_tag(device))
    store.write_bytes(key, artifacts[0])
    log.info("saved the compile cache (%.1f MB) to %s/%s", len(artifacts[0]) / 1e6, store.uri, key)
    return True
