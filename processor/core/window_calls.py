"""One call of a windowed route (ADR 0025): retried as any consumer call (``max_retries``,
full jitter); a RecordError, a bad state or exhausted retries dead-letter the call's
records, and the window keeps its state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import (
    Retrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
    stop_when_event_set,
    wait_random_exponential,
)

from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetterWriter, now_utc
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy, _Exhausted
from processor.core.routing import Route
from processor.core.windows import TumblingWindows, Window, check_state
from processor.errors import RecordError, ShutdownRequested

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
    retrying = Retrying(
        stop=(stop_after_attempt(retries + 1) if retries >= 0 else stop_never)
        | stop_when_event_set(context.stop),
        wait=wait_random_exponential(multiplier=policy.base_delay_s, max=policy.max_delay_s),
        retry=retry_if_not_exception_type((RecordError, ShutdownRequested)),
        sleep=context.sleep,
        reraise=True,
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
        state = retrying(call)
    except ShutdownRequested:
        raise
    except Exception as exc:
        if context.stop.is_set():
            raise ShutdownRequested("stop requested while retrying a window") from exc
        if records:
            context.letters.exhausted(
                route, records, _Exhausted(records, exc, attempts), first_attempt_at
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
