"""Where a shard without a checkpoint starts at a time (``starting_position = AT_TIMESTAMP``).

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
from processor.sources.reader import RecordWindow

__all__ = ["created_since"]

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
