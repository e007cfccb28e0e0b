"""What a lease's records go to: the ShardTarget seam. PipelineTarget is our pipeline
(routes, checkpoint after every delivered batch); processor.kclpy_daemon has a KCL child."""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from typing import Protocol

import structlog

from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord

__all__ = ["PipelineTarget", "ReaderOutcome", "ShardContext", "ShardTarget"]

log = structlog.get_logger()


class ReaderOutcome(enum.Enum):
    FINISHED = "finished"  # closed shard drained and checkpointed as finished
    STOPPED = "stopped"  # stop requested; the last handled batch is checkpointed
    LEASE_LOST = "lease_lost"  # another owner took the shard
    FAILED = "failed"  # an unexpected error; the lease is released for a retry


class ShardContext(Protocol):
    """What a target sees of the shard it serves: who it is, where it stands, how to
    commit, and the stop. The shard reader (:class:`~processor.runtime.reader.ShardReader`)
    is one; a target never reaches the reader's loop, its source or its lease store."""

    #: set by a target that learns the lease is gone (the run then ends)
    lease_lost: bool

    @property
    def shard_id(self) -> str: ...

    @property
    def last_handled(self) -> str | None:
        """The last sequence number committed (or resumed after)."""

    @property
    def initial_position(self) -> str:
        """Where the shard starts without a checkpoint (TRIM_HORIZON, LATEST, ...)."""

    @property
    def lag_s(self) -> float:
        """How far behind the shard's tip the reader is."""

    @property
    def reordering(self) -> bool:
        """Batches are reordered per key: a batch's last record need not be its highest."""

    @property
    def window_state(self) -> str | None:
        """The window states written with the last checkpoint (ADR 0025)."""

    @property
    def stop(self) -> threading.Event:
        """Set when the run should end after this batch."""

    def commit(
        self,
        sequence_number: str | None,
        *,
        finished: bool = False,
        handled_time: float | None = None,
        window_state: str | None = None,
        coalesce: bool = False,
    ) -> None:
        """Checkpoint: every record up to ``sequence_number`` is handled. ``coalesce``: the
        write may be joined with the next batches' of the same page (never made before)."""


class ShardTarget(Protocol):
    """What a shard's records go to: our dispatch pipeline (:class:`PipelineTarget`), or a
    KCL MultiLang child process (:mod:`processor.kclpy_daemon`). The reader reads, batches and
    keeps the lease; the target handles batches and decides what is checkpointed, through
    :meth:`ShardContext.commit`."""

    #: also hand over empty batches (KCL's callProcessRecordsEvenForEmptyRecordList)
    wants_empty_batches: bool

    def start(self, shard: ShardContext) -> None:
        """Before the first batch of a run (a restarted reader starts again)."""

    def process(self, shard: ShardContext, batch: list[StreamRecord]) -> None:
        """Handle one batch, in stream order; commit what is safely done."""

    def shard_ended(self, shard: ShardContext) -> bool:
        """The shard has no more records: True once its end is checkpointed (finished)."""

    def reject_malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str) -> None:
        """Records that could not be parsed: to the dead-letter destination."""

    def finish(self, shard: ShardContext, outcome: ReaderOutcome) -> None:
        """The run ended with ``outcome`` (see :attr:`ShardContext.lease_lost`)."""


class PipelineTarget:
    """Our own pipeline: every batch goes through the routes (delivered or dead-lettered),
    then its last record is checkpointed."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.windows = getattr(dispatcher, "windows", None)  # a test double may have none
        #: with tumbling windows, a caught-up reader hands over empty batches so that a window
        #: whose end passed is closed on time
        self.wants_empty_batches = self.windows is not None

    def start(self, shard: ShardContext) -> None:
        if self.windows is not None:  # the states written with the last checkpoint
            self.windows.load(shard.window_state, shard.shard_id)

    def _states(self) -> str | None:
        return self.windows.dump() if self.windows is not None else None

    def process(self, shard: ShardContext, batch: list[StreamRecord]) -> None:
        if not batch:
            if self.windows is not None and self.windows.close_due():
                shard.commit(shard.last_handled, window_state=self._states())
            return
        self.dispatcher.dispatch(batch)
        # the highest position of the batch: with a reorder window a batch is a prefix of the
        # arrivals in creation order per key, so its last record need not be its highest
        last = max(batch, key=lambda r: r.sequence_int) if shard.reordering else batch[-1]
        created = last.approximate_creation_time
        shard.commit(
            last.sequence_number,
            handled_time=created.timestamp() if created else None,
            window_state=self._states(),
            coalesce=True,
        )

    def shard_ended(self, shard: ShardContext) -> bool:
        if self.windows is not None:
            self.windows.close_all()  # is_shard_end: the children start fresh
        shard.commit(shard.last_handled, finished=True, window_state="" if self.windows else None)
        return True

    def reject_malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str) -> None:
        self.dispatcher.reject_malformed(items, shard_id)

    def finish(self, shard: ShardContext, outcome: ReaderOutcome) -> None:
        self.dispatcher.close()
