"""A background thread that builds training batches ahead of the optimiser."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Prefetcher:
    """Builds items ``make(i)`` for ``i`` in ``range(start, stop)`` in a background thread.

    Items arrive in order; since each item depends only on its index, prefetching never
    changes results.  Use as an iterator, and :meth:`close` (or a ``with`` block) to stop.
    """

    def __init__(self, make: Callable[[int], Any], start: int, stop: int, depth: int = 3) -> None:
        self._make = make
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._remaining = stop - start
        self._thread = threading.Thread(
            target=self._run, args=(start, stop), daemon=True, name="patch-prefetch"
        )
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, start: int, stop: int) -> None:
        try:
            for i in range(start, stop):
                if not self._put(("ok", self._make(i))):
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(("error", exc))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._remaining <= 0:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        self._remaining -= 1
        return value

    def close(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
