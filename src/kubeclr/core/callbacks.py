"""Training callbacks: how side effects (metrics, logging) reach the pure loop.

The training loop calls these hooks; the Prometheus exporter and the per-epoch
logger implement them. The loop never imports what sits behind them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class Callback:
    """No-op base: override what you need."""

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        """Called once with run facts: arch, device, epochs, steps_per_epoch, world_size, start_epoch."""

    def on_step_end(self, step: int, seconds: float) -> None:
        """Called after each optimiser step with its wall time (no device sync is forced for it)."""

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        """Called with the epoch's history record (epoch, loss, lr, images_per_second, seconds, …)."""

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        """Called once with the pretrain summary (the metrics.json ``pretrain`` block)."""


class CallbackList(Callback):
    """Fan one call out to many callbacks, in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_start(info)

    def on_step_end(self, step: int, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_step_end(step, seconds)

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(record)

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(summary)
