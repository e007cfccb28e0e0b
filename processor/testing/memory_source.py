"""An in-memory :class:`~processor.sources.base.StreamSource` for tests.

Shards hold raw stream records (the ``Records[]`` entries of GetRecords, as
:func:`processor.testing.make_record` builds them ``.raw``); iterators are positions. A closed
shard ends (``next_iterator`` None) once drained; an open one may grow with :meth:`append`.
It passes the same contract suite as the DynamoDB Streams adapter
(``tests/integration/test_source_contract.py``), so a worker or reader test on it tells the
truth about the real source.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from processor.core.consumer import StreamInfo
from processor.core.records import StreamRecord
from processor.errors import RecordError, StreamError
from processor.sources.base import Page, StreamDescription
from processor.sources.lineage import Shard

__all__ = ["MemorySource"]

_ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")


class MemorySource:
    """Shards with records in memory; safe to read from several threads."""

    retention_s = 24 * 3600.0

    def __init__(
        self,
        shards: Mapping[str, tuple[Shard, Iterable[Mapping[str, Any]]]] = {},
        *,
        info: StreamInfo | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.shards: dict[str, tuple[Shard, list[dict[str, Any]]]] = {
            shard_id: (shard, [dict(r) for r in records])
            for shard_id, (shard, records) in shards.items()
        }
        self.info = info or StreamInfo(
            "arn:aws:dynamodb:us-east-1:000000000000:table/memory/stream/memory",
            "memory",
            "NEW_AND_OLD_IMAGES",
            ("pk",),
        )
        #: GetRecords calls, and every iterator asked for: (shard, type, sequence number)
        self.calls = 0
        self.iterator_requests: list[tuple[str, str, str | None]] = []

    # -- building the stream ------------------------------------------------------------------

    def add_shard(self, shard: Shard, records: Iterable[Mapping[str, Any]] = ()) -> None:
        with self._lock:
            self.shards[shard.shard_id] = (shard, [dict(r) for r in records])

    def append(self, shard_id: str, record: Mapping[str, Any]) -> None:
        """A new record at the tip of an open shard."""
        with self._lock:
            shard, records = self.shards[shard_id]
            if shard.is_closed:
                raise ValueError(f"shard {shard_id} is closed")
            records.append(dict(record))

    def close(self, shard_id: str) -> None:
        """Close a shard (as a split does): readers end once they drained it."""
        with self._lock:
            shard, records = self.shards[shard_id]
            last = records[-1]["dynamodb"]["SequenceNumber"] if records else "0"
            self.shards[shard_id] = (replace(shard, ending_sequence_number=last), records)

    def remove(self, shard_id: str) -> None:
        """The shard leaves the stream (past the retention): no longer listed or readable."""
        with self._lock:
            del self.shards[shard_id]

    # -- StreamSource -------------------------------------------------------------------------

    def describe(self, stream_arn: str, *, children_of: str | None = None) -> StreamDescription:
        with self._lock:
            shards = [s for s, _ in self.shards.values()]
        if children_of is not None:
            shards = [s for s in shards if children_of in s.parent_shard_ids]
        return StreamDescription(self.info, tuple(shards), "ENABLED")

    def child_shards(self, stream_arn: str, shard_id: str) -> list[Shard]:
        return list(self.describe(stream_arn, children_of=shard_id).shards)

    def get_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        if iterator_type not in _ITERATOR_TYPES:
            raise StreamError(f"GetShardIterator: no iterator type {iterator_type!r}")
        with self._lock:
            self.iterator_requests.append((shard_id, iterator_type, sequence_number))
            if shard_id not in self.shards:
                raise StreamError(f"GetShardIterator: no shard {shard_id}", shard_id=shard_id)
            records = self.shards[shard_id][1]
            if iterator_type == "TRIM_HORIZON":
                position = 0
            elif iterator_type == "LATEST":
                position = len(records)
            else:
                if sequence_number is None:
                    raise StreamError(f"GetShardIterator: {iterator_type} needs a sequence number")
                wanted = int(sequence_number)
                after = iterator_type == "AFTER_SEQUENCE_NUMBER"
                position = next(
                    (
                        i
                        for i, r in enumerate(records)
                        if int(r["dynamodb"]["SequenceNumber"]) > wanted
                        or (not after and int(r["dynamodb"]["SequenceNumber"]) == wanted)
                    ),
                    len(records),
                )
        return f"{shard_id}|{position}"

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        shard_of_iterator, position_text = iterator.rsplit("|", 1)
        with self._lock:
            self.calls += 1
            shard, records = self.shards[shard_of_iterator]
            position = int(position_text)
            raw = records[position : position + limit]
            end = position + len(raw)
            drained = shard.is_closed and end >= len(records)
        decoded: list[StreamRecord] = []
        malformed: list[tuple[Any, Exception]] = []
        for entry in raw:
            try:
                decoded.append(StreamRecord.from_wire(entry, shard_id=shard_of_iterator))
            except RecordError as exc:
                malformed.append((entry, exc))
        return Page(decoded, None if drained else f"{shard_of_iterator}|{end}", tuple(malformed))
