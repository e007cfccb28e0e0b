"""Where a shard starts (:func:`live_start`), and the window of a start at a time
(``starting_position = AT_TIMESTAMP``).

Kinesis has an AT_TIMESTAMP iterator. DynamoDB Streams has none, so the shard is read from
TRIM_HORIZON and records created before the time are skipped, at the stream's timestamp
granularity (``ApproximateCreationDateTime`` is rounded down to the second on AWS, to the
minute on DynamoDB Local): a record stamped in the starting second is kept, so nothing at or
after the time is lost, as with replay's time bounds.
"""

from __future__ import annotations

import math

import structlog

from processor.core.records import StreamRecord
from processor.leases.model import Lease
from processor.runtime.reader import RecordWindow
from processor.runtime.shard_run import WorkerSettings

__all__ = ["Position", "created_since", "live_start"]

#: an iterator type and its argument (a sequence number, a time), as the source takes them
Position = tuple[str, str | None]

log = structlog.get_logger()


def created_since(timestamp: float, granularity_s: float = 1.0) -> RecordWindow:
    """A reader window that drops records created before ``timestamp`` (never ends)."""
    earliest = math.floor(timestamp / granularity_s) * granularity_s

    def window(records: list[StreamRecord]) -> tuple[list[StreamRecord], bool]:
        kept = []
        for record in records:
            created = record.approximate_creation_time
            if created is not None and math.floor(created.timestamp()) < earliest:
                continue
            kept.append(record)
        if len(kept) < len(records):
            log.debug("records_before_starting_timestamp_skipped", count=len(records) - len(kept))
        return kept, False

    return window


def live_start(
    lease: Lease, parents: tuple[str, ...], finished: set[str], settings: WorkerSettings
) -> tuple[Position, RecordWindow | None]:
    """Where a live run starts reading a shard, and the window its records pass through.

    A child whose parent this process read starts at its beginning, whatever the configured
    starting position: otherwise the records between the split and now would be lost. With
    AT_TIMESTAMP, a shard without a checkpoint skips what was made before the time (a child of
    a read parent included: its earlier records are not wanted either), natively on Kinesis,
    by a window on DynamoDB Streams."""
    position: Position = (
        ("TRIM_HORIZON", None)
        if lease.from_start or any(p in finished for p in parents)
        else (settings.starting_position, None)
    )
    at = settings.starting_timestamp
    if settings.starting_position != "AT_TIMESTAMP" or at is None or lease.checkpoint is not None:
        return position, None
    if settings.native_at_timestamp:
        return ("AT_TIMESTAMP", repr(at)), None
    return ("TRIM_HORIZON", None), created_since(at, settings.timestamp_granularity_s)
