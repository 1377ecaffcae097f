"""Compute the next batch on a background thread while the current one trains.

On CPU the batched augmentation and the model share the same cores; the
seed article's DataLoader overlaps them with worker processes. :class:`Prefetch`
gets the same overlap with one producer thread (PyTorch kernels release the
GIL) and no extra process, shared memory or pickling. Items are produced
strictly in order by that one thread, so a generator it draws from advances
exactly as it would inline: results are bitwise identical to the inline loop,
and once the iteration is finished the generator's state is the same as well.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Callable, Generic, Iterator, TypeVar

import torch

T = TypeVar("T")
_POLL_S = 0.1


class Prefetch(Generic[T]):
    """Iterate ``produce(0), …, produce(count - 1)`` computed ``depth`` items ahead on one thread.

    Use as a context manager; leaving it (normally or by an exception) stops
    the producer after at most the item it is computing.

    Args:
        produce: item ``i`` -> value; called on the producer thread, in order.
        count: number of items.
        depth: how many finished items may wait (1 = one batch ahead).
        threads: torch intra-op threads of the producer thread (0 = torch's
            default). Set per thread: the caller's setting is untouched.

    Raises:
        Exception: whatever ``produce`` raised, re-raised in the consumer.
    """

    def __init__(self, produce: Callable[[int], T], count: int, *, depth: int = 1, threads: int = 1) -> None:
        self._produce, self._count, self._threads = produce, count, threads
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeclr-prefetch", daemon=True)

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        for _ in range(self._count):
            ok, value = self._queue.get()
            if not ok:
                raise value
            yield value

    def _run(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        try:
            for i in range(self._count):
                if self._stop.is_set():
                    return
                self._put((True, self._produce(i)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put((False, exc))

    def _put(self, item: tuple[bool, object]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                pass
