"""Pacing writes to what the table accepts: an AIMD rate of items per second, cut to what
the table was seen to take (ADR 0029)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AimdRate"]

#: a throttling cuts the rate to this share of what the table took over the last second
BACKOFF = 0.9
#: the shortest span a rate is measured over, in seconds
MIN_SPAN_S = 0.1


class AimdRate:
    """Items per second for one table: additive increase, multiplicative decrease (thread-safe).

    Unlimited until the first throttling. A throttling cuts the rate to ``BACKOFF`` of the
    items the table took over the last second (``accepted``), when it took more than half of
    what was sent; else to half the rate (the first time: half of what was sent over the
    last second); not below ``minimum``. The rate is raised by ``increase`` after each clean
    call, and is unlimited again once above ``maximum``. ``acquire(n)`` returns how long to
    wait before sending ``n`` items.

    A table without burst credit takes exactly its capacity: halving at each throttling
    made a sawtooth that averaged three quarters of it (issue 32); a cut to just under what
    the table took keeps the flow near it.

    Once per congestion event: a throttled call that was paced before the last cut
    (``sent_at``: the pacer's clock when it asked to go) was sent at the rate already cut,
    so it does not cut it again. Four calls in flight when the table pushes back cut the
    rate once, not four times (issue 19).
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
        self._took: deque[tuple[float, int]] = deque()
        self._started: float | None = None  # the first acquire

    def acquire(self, items: int) -> float:
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            _add(self._sent, now, items)
            if self.rate is None:
                return 0.0
            start = max(now, self._next)
            self._next = start + items / self.rate
            return start - now

    def accepted(self, items: int) -> None:
        """A call's answer: the table wrote ``items`` of it."""
        with self._lock:
            _add(self._took, self._clock(), items)

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
            now = self._clock()
            decreased = self._decreased_at
            same_event = sent_at is not None and decreased is not None and sent_at < decreased
            if self.rate is not None and same_event:  # paced before the last cut
                return self.rate
            self._decreased_at = now
            # per second over the last second, or over the time since the first call when
            # that is shorter (a table without credit throttles at once; 100 items sent in
            # its first 30 ms are not a rate of 100/s)
            span = min(1.0, max(MIN_SPAN_S, now - (self._started or now)))
            sent = _total(self._sent, now) / span
            current = self.rate if self.rate is not None else sent
            took = min(_total(self._took, now) / span, current)
            self.rate = max(self._min, current / 2, BACKOFF * took)
            self.lowest = self.rate if self.lowest is None else min(self.lowest, self.rate)
            return self.rate


def _add(window: deque[tuple[float, int]], now: float, items: int) -> None:
    window.append((now, items))
    while window and now - window[0][0] > 1.0:
        window.popleft()


def _total(window: deque[tuple[float, int]], now: float) -> float:
    return float(sum(n for when, n in window if now - when <= 1.0))
