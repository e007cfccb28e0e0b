"""Sleeping that a stop request interrupts (the default ``sleep`` of every retry policy)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def interruptible_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A ``sleep(seconds)`` that returns early once ``stop`` is set."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep
