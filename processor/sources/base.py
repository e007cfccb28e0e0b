"""The source seam: what the worker and the shard reader need from a stream.

A source lists its shards with their lineage (one parent, or two after a merge), hands out
iterators at a position, and returns pages of records decoded to :class:`StreamRecord`. Its
errors are already translated into :mod:`processor.errors` (``IteratorExpiredError``,
``TrimmedDataError``, ``TransientError`` for throttling, ``StreamError`` otherwise). The reader
loop, leases, dispatch and consumers never see which stream carries the change.

Implementations: :class:`processor.sources.dynamodb.StreamsAdapter` (DynamoDB Streams) and
:class:`processor.testing.MemorySource` (in memory, for tests). Both pass the contract suite in
``tests/integration/test_source_contract.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from processor.core.consumer import StreamInfo
from processor.core.records import StreamRecord
from processor.sources.lineage import Shard

__all__ = ["Page", "StreamDescription", "StreamSource"]


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer. ``next_iterator`` is None once a closed shard is drained."""

    records: list[StreamRecord]
    next_iterator: str | None
    malformed: tuple[tuple[Any, Exception], ...] = ()
    #: how far behind the shard's tip this page is, as the source says (Kinesis'
    #: MillisBehindLatest); None: the reader works it out from the records' creation times
    millis_behind: int | None = None


@dataclass(frozen=True, slots=True)
class StreamDescription:
    info: StreamInfo
    shards: tuple[Shard, ...]
    status: str


class StreamSource(Protocol):
    """Discovery, lineage, iterators and pages of one kind of stream.

    Iterator types are DynamoDB Streams' (``TRIM_HORIZON``, ``LATEST``, ``AT_SEQUENCE_NUMBER``,
    ``AFTER_SEQUENCE_NUMBER``); a source maps them to its own. ``retention_s`` bounds how long
    a record can wait for delivery before the stream itself drops it.
    """

    @property
    def retention_s(self) -> float: ...

    def describe(self, stream_arn: str, *, children_of: str | None = None) -> StreamDescription:
        """Every shard of the stream (or the children of one), following pagination."""
        ...

    def child_shards(self, stream_arn: str, shard_id: str) -> list[Shard]:
        """The children of a finished shard."""
        ...

    def get_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        """An iterator: TRIM_HORIZON, LATEST, AT_/AFTER_SEQUENCE_NUMBER ``sequence_number``;
        sources that start at a time (Kinesis) also take AT_TIMESTAMP, the position then
        being epoch seconds as a string."""
        ...

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        """The next page; records that do not decode come back in ``malformed``."""
        ...
