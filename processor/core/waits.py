"""Waiting: the one Retry-After wait (full-jitter exponential backoff that honours a server's
answer) and the one interruptible sleep.

Every retry that talks to a server (the dispatcher's per-route retries, the webhook's
per-request retries) waits with :class:`WaitRetryAfter`, and every ``Retry-After`` header is
read with :func:`parse_retry_after`.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, wait_random_exponential

__all__ = ["WaitRetryAfter", "interruptible_sleep", "parse_retry_after"]


def parse_retry_after(value: str | None, *, clock: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock())


class WaitRetryAfter:
    """A tenacity ``wait``: full jitter up to ``max_s``, never less than the failure's
    ``retry_after`` (capped at ``max_s``). Any exception with a ``retry_after`` attribute
    (``TransientError`` and the dispatcher's partial failures) counts."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base_s, max=max_s)
        self.max_s = max_s

    def __call__(self, state: RetryCallState) -> float:
        delay = float(self._jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            delay = max(delay, min(float(retry_after), self.max_s))
        return delay


def interruptible_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A ``sleep(seconds)`` that returns early once ``stop`` is set."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep
