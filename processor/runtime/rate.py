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

    def reserve(self, records: int) -> float:
        """Take ``records`` from the bucket; the seconds to wait before they may go."""
        with self._lock:
            now = self._monotonic()
            start = max(now, self._next)
            self._next = start + records / self.rate
            return start - now
