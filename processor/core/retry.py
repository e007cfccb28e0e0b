"""Delivery semantics of one route's retries: the budget (RetryPolicy), the waits, the stops
(attempts spent, record age, holds that spend nothing), and the failures that carry them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from tenacity import (
    RetryCallState,
)
from tenacity.stop import stop_base

from processor.core.consumer import RouteStats
from processor.core.records import StreamRecord
from processor.core.waits import WaitRetryAfter
from processor.errors import RecordError, ShutdownRequested, Signal

__all__ = [
    "Charged",
    "Exhausted",
    "PartialFailure",
    "RetryPolicy",
    "StopAfterCharged",
    "StopHoldingWhenTooOld",
    "StopWhenTooOld",
    "TooOld",
    "WaitWithRetryAfter",
    "created_at",
    "log_retry",
    "retryable",
]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before a record is dead-lettered (Lambda's controls, same meaning)."""

    max_retries: int = 3
    bisect_on_error: bool = True
    base_delay_s: float = 0.2
    max_delay_s: float = 20.0
    max_record_age_s: int = -1
    parallelism: int = 1
    #: Lambda mode: records that exhaust retries for a transient reason are returned to the
    #: caller (reported as batchItemFailures) instead of being dead-lettered.
    report_exhausted: bool = False
    #: how long the source keeps a record (DynamoDB Streams: 24 h): "retry forever" and a
    #: hold end there, since the stream itself drops the record then
    retention_s: float = 24 * 3600.0

    @property
    def age_limit_s(self) -> float | None:
        if self.max_record_age_s != -1:
            return float(self.max_record_age_s)
        return self.retention_s if self.max_retries == -1 else None


class Exhausted(Signal):
    def __init__(
        self,
        remaining: list[StreamRecord],
        error: BaseException,
        attempts: int,
        *,
        rejected: int = 0,
    ) -> None:
        super().__init__(str(error))
        self.remaining = remaining
        self.error = error
        self.attempts = attempts
        #: records of the chunk the consumer rejected meanwhile (already dead-lettered)
        self.rejected = rejected


class PartialFailure(Signal):
    def __init__(
        self,
        failed: int,
        total: int,
        retry_after: float | None = None,
        reasons: Mapping[str, str] | None = None,
        *,
        held: bool = False,
    ) -> None:
        super().__init__(
            f"consumer held {total} records: destination unavailable"
            if held
            else f"consumer reported {failed} of {total} records failed"
        )
        self.retry_after = retry_after
        #: nothing was attempted: every record to retry waits for its destination
        self.held = held
        #: the consumer's reason per failed event id (the last attempt's)
        self.reasons = dict(reasons or {})


class TooOld(Signal):
    pass


def retryable(exc: BaseException) -> bool:
    return not isinstance(exc, RecordError | ShutdownRequested)


class WaitWithRetryAfter(WaitRetryAfter):
    """The one Retry-After wait, except that a hold waits for the destination's next probe,
    however long its cool-down (bounded by the source's retention)."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(policy.base_delay_s, policy.max_delay_s)
        self._retention = policy.retention_s

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, PartialFailure) and exc.held and exc.retry_after:
            return min(exc.retry_after, self._retention)
        return super().__call__(state)


class Charged:
    """Counts the calls that spent a retry: every call but a hold (see RetryPolicy)."""

    def __init__(self) -> None:
        self.calls = 0
        self.holding = False


class StopAfterCharged(stop_base):
    def __init__(self, charged: Charged, max_retries: int) -> None:
        self._charged = charged
        self._max = max_retries

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._charged.calls > self._max


class StopWhenTooOld(stop_base):
    """Stop retrying once the oldest record being retried passed the age limit."""

    def __init__(
        self, oldest: Callable[[], float | None], limit_s: float, clock: Callable[[], float]
    ) -> None:
        self._oldest = oldest
        self._limit = limit_s
        self._clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        created = self._oldest()
        return created is not None and self._clock() - created > self._limit


class StopHoldingWhenTooOld(StopWhenTooOld):
    """A hold is bounded by age alone: max_record_age_s, or the stream's retention."""

    def __init__(
        self,
        charged: Charged,
        oldest: Callable[[], float | None],
        limit_s: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(oldest, limit_s, clock)
        self._charged = charged

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._charged.holding and super().__call__(retry_state)


def created_at(record: StreamRecord) -> float | None:
    when: datetime | None = record.approximate_creation_time
    return when.timestamp() if when else None


def log_retry(route: str, state: RetryCallState, stats: RouteStats) -> None:
    stats.add("retries")
    exc = state.outcome.exception() if state.outcome else None
    stats.add(f"retry:{type(exc).__name__}")
    log.warning(
        "consumer_retrying",
        route=route,
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        error_type=type(exc).__name__,
        error=str(exc),
    )
