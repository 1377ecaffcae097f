"""Prometheus metrics for training and for every pipeline step.

(Foundation version: both outputs are off, so these return no-op objects.
The Pushgateway and /metrics endpoint land with the storage/metrics issue.)
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from kubeclr.callbacks import Callback
from kubeclr.config import MetricsConfig


def training_callback(cfg: MetricsConfig, run_name: str) -> Callback:
    """The callback that exports training metrics for ``run_name`` (no-op when both outputs are off)."""
    return Callback()


@contextlib.contextmanager
def step_metrics(cfg: MetricsConfig, run_name: str, step: str) -> Iterator[None]:
    """Record a pipeline step's success and duration (no-op when both outputs are off)."""
    yield
