"""Per-step durations that mean what they say on a GPU, read once per epoch.

``time.perf_counter()`` around a CUDA step measures how long the host took to
*enqueue* it, not how long the GPU ran it. :class:`StepTimer` records a CUDA
event at each step boundary instead (no sync) and reads the durations when the
epoch ends, after the loop's one sync per epoch; on CPU, where work is
synchronous, the host clock is the truth.
"""

from __future__ import annotations

import time

import torch


class StepTimer:
    """Durations of ``steps`` consecutive steps on ``device``.

    Call :meth:`start` before the first step and :meth:`mark` after each one;
    :meth:`seconds` returns one duration per marked step.
    """

    def __init__(self, device: torch.device, steps: int) -> None:
        self.cuda = device.type == "cuda"
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if self.cuda else []
        self._times: list[float] = []

    def start(self) -> None:
        self._record()

    def mark(self) -> None:
        self._record()

    def _record(self) -> None:
        if self.cuda:
            self._events[len(self._times)].record()
            self._times.append(0.0)  # placeholder: the count of recorded events
        else:
            self._times.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """One duration per step marked so far (waits for the last CUDA event)."""
        n = len(self._times)
        if n < 2:
            return []
        if not self.cuda:
            return [b - a for a, b in zip(self._times, self._times[1:])]
        self._events[n - 1].synchronize()
        return [self._events[i].elapsed_time(self._events[i + 1]) / 1000 for i in range(n - 1)]
