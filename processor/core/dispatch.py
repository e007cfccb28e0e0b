"""Batch delivery semantics: retries, partial failures, bisection, record age, parallelism.

For each route, the records of a batch it accepts are handed to its consumer in stream order:

* success (``None``) - done;
* partial failure (``BatchResult``) - for every key, the records before that key's first
  failed record are done; the call is retried with, per key, the first failed record and all
  later ones (so per-key order holds and successes are not re-delivered);
* an exception - retried with exponential backoff and full jitter (a
  :class:`~processor.errors.RecordError` is never retried);
* retries exhausted (``max_retries``; ``-1`` retries until the record is older than
  ``max_record_age_s``, or the 24 h stream retention) - with ``bisect_on_error`` the remaining
  records are split in halves, each with its own retries, down to a single record; that record
  (or, without bisection, the whole remainder) goes to the dead-letter destination with its
  error and attempt count, and delivery continues;
* records older than ``max_record_age_s`` go to the dead-letter destination without a call;
* a hold (``BatchResult.held`` names every record left to retry: the consumer did not try them
  because their destination is down) waits the whole ``retry_after`` and spends no retry;
  only ``max_record_age_s``, or the 24 h retention, ends it (ADR 0015).

With ``parallelism`` > 1 the records are split into that many key groups delivered at once:
never two records of one item key at the same time, and always in key order.

``dispatch`` returns only when every record was delivered, dead-lettered or (in ``report``
mode, for the Lambda handler) returned as unhandled, so the caller may checkpoint the batch.
A stop requested while waiting to retry raises :class:`~processor.errors.ShutdownRequested`:
the batch is abandoned, not checkpointed.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from tenacity import (
    stop_never,
)
from tenacity.stop import stop_base

from processor.core.batches import call_consumer, consumer_outcome, key_groups
from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter, DeadLetterSink, DeadLetterWriter, now_utc
from processor.core.records import StreamRecord
from processor.core.retry import (
    Charged,
    Exhausted,
    RetryPolicy,
    StopAfterCharged,
    StopHoldingWhenTooOld,
    StopWhenTooOld,
    TooOld,
    WaitWithRetryAfter,
    created_at,
    log_retry,
    retryable,
)
from processor.core.routing import Route
from processor.core.tenancy import Tenancy, TenantStats
from processor.core.waits import interruptible_sleep
from processor.core.window_calls import WindowCallContext, call_window
from processor.core.windows import TumblingWindows, Window
from processor.errors import RecordError, ShutdownRequested
from processor.retries import retrying

__all__ = ["Dispatcher"]

log = structlog.get_logger()


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
        observe: Callable[[str, float], None] | None = None,
        tenancy: Tenancy | None = None,
        tenant_stats: TenantStats | None = None,
    ) -> None:
        self.routes = tuple(routes)
        self._tenancy = tenancy
        self.tenant_stats = tenant_stats if tenant_stats is not None else TenantStats()
        self._observe = observe
        self._sink = dead_letter
        self._policy = policy
        self._stats = stats
        self._stop = stop
        self._sleep = sleep if sleep is not None else interruptible_sleep(stop)
        self._clock = clock
        self._wait = WaitWithRetryAfter(policy)
        self._pool: ThreadPoolExecutor | None = None
        self._unhandled_lock = threading.Lock()
        self._unhandled: dict[str, StreamRecord] = {}  # by sequence number (itemIdentifier)
        self._letters = DeadLetterWriter(
            dead_letter,
            stop=stop,
            sleep=self._sleep,
            clock=clock,
            base_delay_s=policy.base_delay_s,
            tenant_stats=self.tenant_stats,
        )
        sizes = {r.name: r.window_s for r in self.routes if r.window_s}
        #: this reader's (shard's) tumbling windows, when a route has one
        self.windows = TumblingWindows(sizes, self._window_call, clock=clock) if sizes else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def dispatch(self, records: Sequence[StreamRecord]) -> list[StreamRecord]:
        """Deliver ``records`` to every route.

        Returns the records left unhandled (only in ``report_exhausted`` mode; otherwise every
        record was delivered or dead-lettered and the list is empty), in stream order.
        """
        self._unhandled = {}
        if self._tenancy is not None:
            records, aside = self._tenancy.assign(records)
            if aside:
                self._set_aside(aside)
        for route in self.routes:
            started = time.perf_counter()
            if route.watch is not None:
                route.watch(records)
            selected = route.select(records)
            stats = self._stats[route.name]
            stats.add("filtered", len(records) - len(selected))
            if not selected:
                continue
            self.tenant_stats.add_records(route.name, selected, "routed")
            if route.window_s and self.windows is not None:
                self.windows.deliver(route.name, selected)
                continue
            dead = self._deliver_route(route, selected, stats)
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
        return sorted(self._unhandled.values(), key=lambda r: r.sequence_int)

    def _window_call(
        self, name: str, records: list[StreamRecord], window: Window
    ) -> dict[str, Any] | None:
        """One call of a windowed route (:func:`~processor.core.window_calls.call_window`)."""
        return call_window(
            next(r for r in self.routes if r.name == name),
            records,
            window,
            WindowCallContext(
                self._policy, self._stats[name], self._letters, self.windows, self._stop,
                self._sleep, self._clock,
            ),
        )  # fmt: skip

    def _set_aside(self, records: list[StreamRecord]) -> None:
        """Records without a tenant under ``[tenancy] missing = skip | dead_letter``."""
        assert self._tenancy is not None
        resolver = self._tenancy.resolver
        reason = (
            f"key attribute {resolver.attribute!r} is missing or does not match "
            f"[tenancy] pattern {resolver.pattern.pattern!r}"
        )
        if self._tenancy.missing == "skip":
            self.tenant_stats.add_records("-", records, "skipped")
            log.info("records_without_tenant_skipped", count=len(records), reason=reason)
            return
        now = now_utc(self._clock)
        self._letters.write(
            [
                DeadLetter(
                    record=r.raw,
                    route="-",
                    error_type="NoTenant",
                    error_message=reason,
                    attempts=0,
                    shard_id=r.shard_id,
                    first_attempt_at=now,
                    dead_lettered_at=now,
                )
                for r in records
            ]
        )
        log.warning("records_without_tenant_dead_lettered", count=len(records), reason=reason)

    # -- one route ----------------------------------------------------------------------------

    def _deliver_route(self, route: Route, records: list[StreamRecord], stats: RouteStats) -> int:
        records = self._drop_too_old(route, records, stats)
        groups = key_groups(records, self._policy.parallelism)
        if len(groups) <= 1:
            return sum(self._deliver(route, group, stats) for group in groups)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._policy.parallelism, thread_name_prefix="dsp-keygroup"
            )
        futures = [
            self._pool.submit(contextvars.copy_context().run, self._deliver, route, group, stats)
            for group in groups
        ]
        # Wait for every group (even after one failed), then surface the first error.
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after all groups ended
                errors.append(exc)
        if errors:
            raise errors[0]
        return sum(results)

    def _drop_too_old(
        self, route: Route, records: list[StreamRecord], stats: RouteStats
    ) -> list[StreamRecord]:
        if self._policy.max_record_age_s == -1:
            return records
        now = self._clock()
        limit = self._policy.max_record_age_s
        fresh: list[StreamRecord] = []
        old: list[StreamRecord] = []
        for record in records:
            created = created_at(record)
            (old if created is not None and now - created > limit else fresh).append(record)
        if old:
            error = TooOld(f"older than max_record_age_s={limit}")
            self._letters.exhausted(route, old, Exhausted(old, error, 0), now_utc(self._clock))
            stats.add("dead_lettered", len(old))
            stats.add("too_old", len(old))
        return fresh

    def _deliver(self, route: Route, records: list[StreamRecord], stats: RouteStats) -> int:
        first_attempt_at = now_utc(self._clock)
        pending: deque[list[StreamRecord]] = deque([records])
        dead_lettered = 0
        while pending:
            chunk = pending.popleft()
            try:
                delivered = self._attempt(route, chunk, stats)
            except Exhausted as exhausted:
                rest = exhausted.remaining
                stats.add("delivered", len(chunk) - len(rest) - exhausted.rejected)
                permanent = isinstance(exhausted.error, RecordError)
                if len(rest) > 1 and self._policy.bisect_on_error:
                    middle = len(rest) // 2
                    pending.appendleft(rest[middle:])
                    pending.appendleft(rest[:middle])
                    stats.add("bisections")
                    continue
                if self._policy.report_exhausted and not permanent:
                    with self._unhandled_lock:
                        self._unhandled.update((r.sequence_number, r) for r in rest)
                    stats.add("unhandled", len(rest))
                    continue
                self._letters.exhausted(route, rest, exhausted, first_attempt_at)
                stats.add("dead_lettered", len(rest))
                dead_lettered += len(rest)
            else:
                stats.add("delivered", delivered)
        return dead_lettered

    def _stop_condition(
        self, remaining: Callable[[], list[StreamRecord]], charged: Charged
    ) -> stop_base:
        """The route's own stops (the stop event is added by :func:`retrying`): its charged
        retries, its records' age."""
        stop: stop_base = stop_never
        if self._policy.max_retries >= 0:
            stop = StopAfterCharged(charged, self._policy.max_retries)

        def oldest() -> float | None:
            times = [t for t in map(created_at, remaining()) if t is not None]
            return min(times) if times else None

        limit = self._policy.age_limit_s
        if limit is not None:
            stop = stop | StopWhenTooOld(oldest, limit, self._clock)
        else:
            stop = stop | StopHoldingWhenTooOld(
                charged, oldest, self._policy.retention_s, self._clock
            )
        return stop

    def _attempt(self, route: Route, chunk: list[StreamRecord], stats: RouteStats) -> int:
        """Call the consumer with retries; returns how many records were delivered.

        Records the consumer rejected are dead-lettered here, once the call sequence ends.
        """
        remaining = list(chunk)
        rejected: list[tuple[StreamRecord, str, int]] = []
        attempts = 0
        charged = Charged()

        def call() -> None:
            nonlocal remaining, attempts
            attempts += 1
            charged.calls += 1
            charged.holding = False
            stats.add("calls")
            started = time.perf_counter()
            try:
                result = call_consumer(route, remaining)
            finally:
                if self._observe is not None:
                    self._observe(route.name, time.perf_counter() - started)
            if result is None:
                remaining = []
                return
            remaining, failure = consumer_outcome(result, remaining, attempts, rejected)
            if failure is not None:
                if failure.held:  # nothing was attempted: no retry spent
                    charged.calls -= 1
                    charged.holding = True
                    stats.add("held")
                raise failure

        attempts_of_route = retrying(
            wait=self._wait,
            stop=self._stop,
            until=self._stop_condition(lambda: remaining, charged),
            retry_on=retryable,
            sleep=self._sleep,
            before_sleep=lambda state: log_retry(route.name, state, stats),
        )
        try:
            attempts_of_route(call)
        except ShutdownRequested:
            raise
        except Exception as exc:
            if self._stop.is_set() and not isinstance(exc, RecordError):
                raise ShutdownRequested("stop requested while retrying") from exc
            self._letters.rejected(route, rejected, stats)
            raise Exhausted(remaining, exc, attempts, rejected=len(rejected)) from exc
        self._letters.rejected(route, rejected, stats)
        return len(chunk) - len(rejected)

    # -- dead letters -------------------------------------------------------------------------

    def reject_malformed(
        self, items: Sequence[tuple[object, Exception]], shard_id: str | None
    ) -> None:
        """Dead-letter records that could not even be parsed (route ``-``, no attempts)."""
        self._letters.malformed(items, shard_id)
