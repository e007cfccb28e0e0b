"""Writing dead letters: records a route rejected, records that exhausted their retries,
records that could not be parsed. Nothing may be lost, so a sink outage is retried until the
letters are stored or a stop is requested (then the batch is abandoned, never skipped)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_when_event_set,
    wait_random_exponential,
)

from processor.core.consumer import RouteStats
from processor.core.records import StreamRecord
from processor.core.retry import (
    _Exhausted,
    _PartialFailure,
    _TooOld,
)
from processor.core.routing import Route
from processor.core.tenancy import NO_TENANT, TenantStats
from processor.errors import ShutdownRequested, TransientError
from processor.sinks.dead_letter import DeadLetter, DeadLetterSink, now_utc

__all__ = ["DeadLetterWriter"]

log = structlog.get_logger()


class DeadLetterWriter:
    """Builds the letters (reason, attempts, times, tenant) and stores them in the sink."""

    def __init__(
        self,
        sink: DeadLetterSink,
        *,
        stop: threading.Event,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        base_delay_s: float,
        tenant_stats: TenantStats,
    ) -> None:
        self._sink = sink
        self._stop = stop
        self._sleep = sleep
        self._clock = clock
        self._base_delay_s = base_delay_s
        self.tenant_stats = tenant_stats

    def rejected(
        self, route: Route, rejected: list[tuple[StreamRecord, str, int]], stats: RouteStats
    ) -> None:
        if not rejected:
            return
        started = now_utc(self._clock)
        self.write(
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
                    tenant=record.tenant,
                )
                for record, reason, attempts in rejected
            ],
        )
        stats.add("dead_lettered", len(rejected))

    def malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str | None) -> None:
        """Dead-letter records that could not even be parsed (route ``-``, no attempts)."""
        if not items:
            return
        now = now_utc(self._clock)
        self.write(
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

    def exhausted(
        self,
        route: Route,
        records: list[StreamRecord],
        exhausted: _Exhausted,
        first_attempt_at: datetime,
    ) -> None:
        error = exhausted.error
        reasons: Mapping[str, str] = {}
        if isinstance(error, _PartialFailure):
            error_type, message = "PartialFailure", str(error)
            reasons = error.reasons
        elif isinstance(error, _TooOld):
            error_type, message = "RecordTooOld", str(error)
        else:
            error_type, message = type(error).__name__, str(error)
        now = now_utc(self._clock)
        entries = [
            DeadLetter(
                record=r.raw,
                route=route.name,
                error_type=error_type,
                error_message=reasons.get(r.event_id, message),
                attempts=exhausted.attempts,
                shard_id=r.shard_id,
                first_attempt_at=first_attempt_at,
                dead_lettered_at=now,
                tenant=r.tenant,
            )
            for r in records
        ]
        self.write(entries)
        log.error(
            "records_dead_lettered",
            route=route.name,
            count=len(entries),
            error_type=error_type,
            error=message,
            attempts=exhausted.attempts,
            sequence_numbers=[r.sequence_number for r in records][:10],
            tenants=sorted({r.tenant or NO_TENANT for r in records})[:10],
        )

    def write(self, entries: list[DeadLetter]) -> None:
        """Store entries; nothing may be lost, so keep trying until stored or stopping.

        On a stop the batch is abandoned (read again after restart), never skipped.
        """
        retrying = Retrying(
            stop=stop_when_event_set(self._stop),
            wait=wait_random_exponential(multiplier=self._base_delay_s, max=30),
            retry=retry_if_exception(lambda e: isinstance(e, TransientError)),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            retrying(self._sink.send, entries)
        except TransientError as exc:
            raise ShutdownRequested("stop requested while writing dead letters") from exc
        for entry in entries:
            self.tenant_stats.add(entry.route, entry.tenant or NO_TENANT, "dead_lettered")
