"""One call of a windowed route (ADR 0025): retried as any consumer call (``max_retries``,
full jitter); a RecordError, a bad state or exhausted retries dead-letter the call's
records, and the window keeps its state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetterWriter, now_utc
from processor.core.records import StreamRecord
from processor.core.retry import Exhausted, RetryPolicy
from processor.core.routing import Route
from processor.core.windows import TumblingWindows, Window, check_state
from processor.errors import RecordError, ShutdownRequested
from processor.retries import Backoff, retrying

__all__ = ["WindowCallContext", "call_window"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class WindowCallContext:
    """What a window call needs of its dispatcher."""

    policy: RetryPolicy
    stats: RouteStats
    letters: DeadLetterWriter
    windows: TumblingWindows | None
    stop: threading.Event
    sleep: Callable[[float], None]
    clock: Callable[[], float]


def call_window(
    route: Route, records: list[StreamRecord], window: Window, context: WindowCallContext
) -> dict[str, Any] | None:
    """One call of a windowed route: retried as any consumer call (``max_retries``, full
    jitter); a RecordError, a bad state or exhausted retries dead-letter the call's
    records, and the window keeps its state (None)."""
    name, stats, policy = route.name, context.stats, context.policy
    first_attempt_at = now_utc(context.clock)
    retries = policy.max_retries
    calls = retrying(
        wait=Backoff(policy.base_delay_s, policy.max_delay_s),
        stop=context.stop,
        attempts=retries + 1 if retries >= 0 else None,
        retry_on=lambda exc: not isinstance(exc, (RecordError, ShutdownRequested)),
        sleep=context.sleep,
    )
    attempts = 0

    def call() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        stats.add("calls")
        state = route.consumer(records, window)
        check_state(name, state)  # a RecordError: never retried
        if context.windows is not None and not window.is_final:
            context.windows.check_fits(name, state)
        return dict(state)

    try:
        state = calls(call)
    except ShutdownRequested:
        raise
    except Exception as exc:
        if context.stop.is_set():
            raise ShutdownRequested("stop requested while retrying a window") from exc
        if records:
            context.letters.exhausted(
                route, records, Exhausted(records, exc, attempts), first_attempt_at
            )
            stats.add("dead_lettered", len(records))
        log.error(  # noqa: TRY400 - the error is the message
            "window_call_failed",
            route=name,
            window_start=window.start,
            is_final=window.is_final,
            state=window.state,
            error=f"{type(exc).__name__}: {exc}",
        )
        return None
    stats.add("delivered", len(records))
    if window.is_final:
        stats.add("windows_closed")
    return state
