"""Pacing writes to what the table accepts: an AIMD rate of items per second."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AimdRate"]


class AimdRate:
    """Items per second for one table: additive increase, multiplicative decrease (thread-safe).

    Unlimited until the first throttling; then half the rate actually sent over the last
    second, halved again on each further throttling (not below ``minimum``), raised by
    ``increase`` after each clean call, and unlimited again once above ``maximum``.
    ``acquire(n)`` returns how long to wait before sending ``n`` items.

    Once per congestion event: a throttled call that was sent before the last decrease
    (``sent_at``, the pacer's clock when it went) was sent at the rate already cut, so it
    does not cut it again. Four calls in flight when the table pushes back halve the rate
    once, not four times (issue 19).
    """

    def __init__(
        self,
        *,
        minimum: float,
        maximum: float,
        increase: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate: float | None = None
        self.lowest: float | None = None
        self._min = minimum
        self._max = maximum
        self._increase = increase
        self._clock = clock
        self._lock = threading.Lock()
        self._next = clock()
        self._decreased_at: float | None = None
        self._sent: deque[tuple[float, int]] = deque()  # (when, items) over the last second

    def acquire(self, items: int) -> float:
        with self._lock:
            now = self._clock()
            self._sent.append((now, items))
            while self._sent and now - self._sent[0][0] > 1.0:
                self._sent.popleft()
            if self.rate is None:
                return 0.0
            start = max(now, self._next)
            self._next = start + items / self.rate
            return start - now

    def succeeded(self) -> None:
        with self._lock:
            if self.rate is not None:
                self.rate += self._increase
                if self.rate > self._max:
                    self.rate = None

    def now(self) -> float:
        return self._clock()

    def throttled(self, *, sent_at: float | None = None) -> float:
        with self._lock:
            decreased = self._decreased_at
            same_event = sent_at is not None and decreased is not None and sent_at < decreased
            if self.rate is not None and same_event:  # sent before the last cut
                return self.rate
            self._decreased_at = self._clock()
            sent = float(sum(n for _, n in self._sent))
            current = self.rate if self.rate is not None else sent
            self.rate = max(self._min, current / 2)
            self.lowest = self.rate if self.lowest is None else min(self.lowest, self.rate)
            return self.rate
