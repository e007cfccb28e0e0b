"""A token bucket for `--rate`: at most ``rate`` records per second, across all readers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next = monotonic()

    def acquire(self, records: int, stop: threading.Event) -> None:
        """Wait until ``records`` more may go; returns early (without waiting) once stopping."""
        with self._lock:
            now = self._monotonic()
            start = max(now, self._next)
            self._next = start + records / self.rate
            wait = start - now
        if wait > 0:
            stop.wait(wait)
