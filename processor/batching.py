"""Batch delivery semantics: retries, partial failures, bisection, dead-lettering.

For each route, the records of a batch it accepts are handed to its consumer in stream order:

* success (``None``) - done;
* partial failure (``BatchResult``) - the records before the first failed one are done; the
  call is retried from the first failed record on (so per-key order holds and successes are
  not re-delivered);
* an exception - retried with exponential backoff and full jitter (a
  :class:`~processor.errors.RecordError` is never retried);
* retries exhausted - with ``bisect_on_error`` the remaining records are split in halves and
  each half gets its own retries, down to a single record; a single record (or, without
  bisection, the whole remainder) then goes to the dead-letter destination with its error
  and the attempt count, and delivery continues.

``dispatch`` returns only when every record was delivered or dead-lettered, so the caller
may checkpoint the batch. A stop requested while waiting to retry raises
:class:`~processor.errors.ShutdownRequested`: the batch is abandoned, not checkpointed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from processor._waiting import interruptible_sleep
from processor.consumer import BatchResult, RouteStats
from processor.dead_letter import DeadLetter, DeadLetterSink, now_utc
from processor.errors import RecordError, ShutdownRequested, TransientError
from processor.records import StreamRecord
from processor.routing import Route

__all__ = ["Dispatcher", "RetryPolicy"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before a record is dead-lettered."""

    max_retries: int = 3
    bisect_on_error: bool = True
    base_delay_s: float = 0.2
    max_delay_s: float = 20.0


class _Exhausted(Exception):
    def __init__(self, remaining: list[StreamRecord], error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.remaining = remaining
        self.error = error
        self.attempts = attempts


class _PartialFailure(Exception):
    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"consumer reported {failed} of {total} records failed")


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, RecordError | ShutdownRequested)


class _WaitWithRetryAfter:
    """Full-jitter exponential backoff that never waits less than a server's Retry-After."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(
            multiplier=policy.base_delay_s, max=policy.max_delay_s
        )
        self._max = policy.max_delay_s

    def __call__(self, state: RetryCallState) -> float:
        delay = float(self._jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, self._max))
        return delay


class Dispatcher:
    """Delivers batches to every route with the semantics in this module's docstring."""

    def __init__(
        self,
        routes: Sequence[Route],
        dead_letter: DeadLetterSink,
        policy: RetryPolicy,
        *,
        stats: Mapping[str, RouteStats],
        stop: threading.Event,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.routes = tuple(routes)
        self._sink = dead_letter
        self._policy = policy
        self._stats = stats
        self._stop = stop
        self._sleep = sleep if sleep is not None else interruptible_sleep(stop)
        self._clock = clock
        self._wait = _WaitWithRetryAfter(policy)

    def dispatch(self, records: Sequence[StreamRecord]) -> None:
        """Deliver ``records`` to every route; returns when each is handled or dead-lettered."""
        for route in self.routes:
            started = time.perf_counter()
            selected = route.select(records)
            stats = self._stats[route.name]
            stats.add("filtered", len(records) - len(selected))
            dead = self._deliver(route, selected, stats) if selected else 0
            if selected:
                log.info(
                    "batch_dispatched",
                    route=route.name,
                    records=len(selected),
                    filtered=len(records) - len(selected),
                    dead_lettered=dead,
                    first_sequence_number=selected[0].sequence_number,
                    last_sequence_number=selected[-1].sequence_number,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )

    # -- one route ----------------------------------------------------------------------------

    def _deliver(self, route: Route, records: list[StreamRecord], stats: RouteStats) -> int:
        first_attempt_at = now_utc(self._clock)
        pending: deque[list[StreamRecord]] = deque([records])
        dead_lettered = 0
        while pending:
            chunk = pending.popleft()
            try:
                delivered = self._attempt(route, chunk, stats)
            except _Exhausted as exhausted:
                rest = exhausted.remaining
                stats.add("delivered", len(chunk) - len(rest))
                if len(rest) > 1 and self._policy.bisect_on_error:
                    middle = len(rest) // 2
                    pending.appendleft(rest[middle:])
                    pending.appendleft(rest[:middle])
                    stats.add("bisections")
                    continue
                self._dead_letter(route, rest, exhausted, first_attempt_at)
                stats.add("dead_lettered", len(rest))
                dead_lettered += len(rest)
            else:
                stats.add("delivered", delivered)
        return dead_lettered

    def _attempt(self, route: Route, chunk: list[StreamRecord], stats: RouteStats) -> int:
        """Call the consumer with retries; returns how many records were delivered.

        Records the consumer rejected are dead-lettered here, once the call sequence ends.
        """
        remaining = list(chunk)
        rejected: list[tuple[StreamRecord, str, int]] = []
        attempts = 0

        def call() -> None:
            nonlocal remaining, attempts
            attempts += 1
            stats.add("calls")
            result = _call_consumer(route, remaining)
            if result is None:
                remaining = []
                return
            failed = result.failed_event_ids
            first = next((i for i, r in enumerate(remaining) if r.event_id in failed), None)
            cut = len(remaining) if first is None else first
            for record in remaining[:cut]:
                if record.event_id in result.rejected:
                    rejected.append((record, result.rejected[record.event_id], attempts))
            remaining = remaining[cut:]
            if remaining:
                raise _PartialFailure(len(failed), len(remaining))

        retrying = Retrying(
            stop=stop_after_attempt(self._policy.max_retries + 1) | stop_when_event_set(self._stop),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(route.name, state, stats),
            reraise=True,
        )
        try:
            retrying(call)
        except ShutdownRequested:
            raise
        except Exception as exc:
            if self._stop.is_set() and not isinstance(exc, RecordError):
                raise ShutdownRequested("stop requested while retrying") from exc
            self._reject(route, rejected, stats)
            raise _Exhausted(remaining, exc, attempts) from exc
        self._reject(route, rejected, stats)
        return len(chunk) - len(rejected)

    def _reject(
        self, route: Route, rejected: list[tuple[StreamRecord, str, int]], stats: RouteStats
    ) -> None:
        if not rejected:
            return
        started = now_utc(self._clock)
        self._write_dead_letters(
            [
                DeadLetter(
                    record=record.raw,
                    route=route.name,
                    error_type="Rejected",
                    error_message=reason,
                    attempts=attempts,
                    shard_id=record.shard_id,
                    first_attempt_at=started,
                    dead_lettered_at=started,
                )
                for record, reason, attempts in rejected
            ],
        )
        stats.add("dead_lettered", len(rejected))

    def reject_malformed(
        self, items: Sequence[tuple[Any, Exception]], shard_id: str | None
    ) -> None:
        """Dead-letter records that could not even be parsed (route ``-``, no attempts)."""
        if not items:
            return
        now = now_utc(self._clock)
        self._write_dead_letters(
            [
                DeadLetter(
                    record=raw if isinstance(raw, dict) else {"unparsed": raw},
                    route="-",
                    error_type=type(error).__name__,
                    error_message=str(error),
                    attempts=0,
                    shard_id=shard_id,
                    first_attempt_at=now,
                    dead_lettered_at=now,
                )
                for raw, error in items
            ],
        )

    def _dead_letter(
        self,
        route: Route,
        records: list[StreamRecord],
        exhausted: _Exhausted,
        first_attempt_at: Any,
    ) -> None:
        error = exhausted.error
        if isinstance(error, _PartialFailure):
            error_type, message = "PartialFailure", str(error)
        else:
            error_type, message = type(error).__name__, str(error)
        now = now_utc(self._clock)
        entries = [
            DeadLetter(
                record=r.raw,
                route=route.name,
                error_type=error_type,
                error_message=message,
                attempts=exhausted.attempts,
                shard_id=r.shard_id,
                first_attempt_at=first_attempt_at,
                dead_lettered_at=now,
            )
            for r in records
        ]
        self._write_dead_letters(entries)
        log.error(
            "records_dead_lettered",
            route=route.name,
            count=len(entries),
            error_type=error_type,
            error=message,
            attempts=exhausted.attempts,
            sequence_numbers=[r.sequence_number for r in records][:10],
        )

    def _write_dead_letters(self, entries: list[DeadLetter]) -> None:
        """Store entries; nothing may be lost, so keep trying until stored or stopping.

        On a stop the batch is abandoned (read again after restart), never skipped.
        """
        retrying = Retrying(
            stop=stop_when_event_set(self._stop),
            wait=wait_random_exponential(multiplier=self._policy.base_delay_s, max=30),
            retry=retry_if_exception(lambda e: isinstance(e, TransientError)),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            retrying(self._sink.send, entries)
        except TransientError as exc:
            raise ShutdownRequested("stop requested while writing dead letters") from exc


def _call_consumer(route: Route, records: list[StreamRecord]) -> BatchResult | None:
    result = route.consumer(records)
    if result is not None and not isinstance(result, BatchResult):
        raise TypeError(
            f"consumer of route {route.name!r} returned {type(result).__name__}; "
            "expected None or processor.BatchResult"
        )
    return result


def _log_retry(route: str, state: RetryCallState, stats: RouteStats) -> None:
    stats.add("retries")
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "consumer_retrying",
        route=route,
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        error_type=type(exc).__name__,
        error=str(exc),
    )
