"""What a lease's records go to: the ShardProcessor seam. DispatchProcessor is our pipeline
(routes, checkpoint after every delivered batch); processor.multilang has a KCL child."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord

if TYPE_CHECKING:
    from processor.sources.reader import ShardReader

__all__ = ["DispatchProcessor", "ReaderOutcome", "ShardProcessor"]

log = structlog.get_logger()


class ReaderOutcome(enum.Enum):
    FINISHED = "finished"  # closed shard drained and checkpointed as finished
    STOPPED = "stopped"  # stop requested; the last handled batch is checkpointed
    LEASE_LOST = "lease_lost"  # another owner took the shard
    FAILED = "failed"  # an unexpected error; the lease is released for a retry


class ShardProcessor(Protocol):
    """What a shard's records go to: our dispatch pipeline (:class:`DispatchProcessor`), or a
    KCL MultiLang child process (:mod:`processor.multilang`). The reader reads, batches and
    keeps the lease; the processor handles batches and decides what is checkpointed, through
    :meth:`ShardReader.commit`."""

    #: also hand over empty batches (KCL's callProcessRecordsEvenForEmptyRecordList)
    wants_empty_batches: bool

    def start(self, reader: ShardReader) -> None:
        """Before the first batch of a run (a restarted reader starts again)."""

    def process(self, reader: ShardReader, batch: list[StreamRecord]) -> None:
        """Handle one batch, in stream order; commit what is safely done."""

    def shard_ended(self, reader: ShardReader) -> bool:
        """The shard has no more records: True once its end is checkpointed (finished)."""

    def reject_malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str) -> None:
        """Records that could not be parsed: to the dead-letter destination."""

    def finish(self, reader: ShardReader, outcome: ReaderOutcome) -> None:
        """The run ended with ``outcome`` (see :attr:`ShardReader.lease_lost`)."""


class DispatchProcessor:
    """Our own pipeline: every batch goes through the routes (delivered or dead-lettered),
    then its last record is checkpointed."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.windows = getattr(dispatcher, "windows", None)  # a test double may have none
        #: with tumbling windows, a caught-up reader hands over empty batches so that a window
        #: whose end passed is closed on time
        self.wants_empty_batches = self.windows is not None

    def start(self, reader: ShardReader) -> None:
        if self.windows is not None:  # the states written with the last checkpoint
            self.windows.load(reader.lease.window_state, reader.shard_id)

    def _states(self) -> str | None:
        return self.windows.dump() if self.windows is not None else None

    def process(self, reader: ShardReader, batch: list[StreamRecord]) -> None:
        if not batch:
            if self.windows is not None and self.windows.close_due():
                reader.commit(reader.last_handled, window_state=self._states())
            return
        self.dispatcher.dispatch(batch)
        # the highest position of the batch: with a reorder window a batch is a prefix of the
        # arrivals in creation order per key, so its last record need not be its highest
        last = max(batch, key=lambda r: r.sequence_int) if reader.reordering else batch[-1]
        created = last.approximate_creation_time
        reader.commit(
            last.sequence_number,
            handled_time=created.timestamp() if created else None,
            window_state=self._states(),
        )

    def shard_ended(self, reader: ShardReader) -> bool:
        if self.windows is not None:
            self.windows.close_all()  # is_shard_end: the children start fresh
        reader.commit(reader.last_handled, finished=True, window_state="" if self.windows else None)
        return True

    def reject_malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str) -> None:
        self.dispatcher.reject_malformed(items, shard_id)

    def finish(self, reader: ShardReader, outcome: ReaderOutcome) -> None:
        self.dispatcher.close()
