"""Dead letters: what one is (the record whole, the route, why, when), the sink protocol
every destination implements (``processor.sinks``: a JSONL file, an SQS queue), and the
writer that builds letters for records a route rejected, records that exhausted their
retries and records that could not be parsed. Nothing may be lost, so a sink outage is
retried until the letters are stored or a stop is requested (then the batch is abandoned,
never skipped)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from processor.core.consumer import RouteStats
from processor.core.records import StreamRecord
from processor.core.retry import (
    Exhausted,
    PartialFailure,
    TooOld,
)
from processor.core.routing import Route
from processor.core.tenancy import NO_TENANT, TenantStats
from processor.errors import ShutdownRequested, TransientError
from processor.retries import STORE_MAX_S, Backoff, retrying

__all__ = ["DeadLetter", "DeadLetterSink", "DeadLetterWriter", "now_utc"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record that could not be handled, with why."""

    record: dict[str, Any]
    route: str
    error_type: str
    error_message: str
    attempts: int
    shard_id: str | None
    first_attempt_at: datetime
    dead_lettered_at: datetime
    tenant: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "error": {"type": self.error_type, "message": self.error_message},
            "attempts": self.attempts,
            "shard_id": self.shard_id,
            "tenant": self.tenant,
            "sequence_number": self.record.get("dynamodb", {}).get("SequenceNumber"),
            "event_id": self.record.get("eventID"),
            "first_attempt_at": self.first_attempt_at.isoformat(),
            "dead_lettered_at": self.dead_lettered_at.isoformat(),
            "record": self.record,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DeadLetter:
        return cls(
            record=doc["record"],
            route=doc["route"],
            error_type=doc["error"]["type"],
            error_message=doc["error"]["message"],
            attempts=int(doc["attempts"]),
            shard_id=doc.get("shard_id"),
            first_attempt_at=datetime.fromisoformat(doc["first_attempt_at"]),
            dead_lettered_at=datetime.fromisoformat(doc["dead_lettered_at"]),
            tenant=doc.get("tenant"),
        )


class DeadLetterSink(Protocol):
    def send(self, entries: Sequence[DeadLetter], /) -> None:
        """Store every entry durably before returning; raise TransientError if that failed."""


def now_utc(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)


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
        exhausted: Exhausted,
        first_attempt_at: datetime,
    ) -> None:
        error = exhausted.error
        reasons: Mapping[str, str] = {}
        if isinstance(error, PartialFailure):
            error_type, message = "PartialFailure", str(error)
            reasons = error.reasons
        elif isinstance(error, TooOld):
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
        until_stored = retrying(
            wait=Backoff(self._base_delay_s, STORE_MAX_S), stop=self._stop, sleep=self._sleep
        )
        try:
            until_stored(self._sink.send, entries)
        except TransientError as exc:
            raise ShutdownRequested("stop requested while writing dead letters") from exc
        for entry in entries:
            self.tenant_stats.add(entry.route, entry.tenant or NO_TENANT, "dead_lettered")
