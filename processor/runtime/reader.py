"""The GetRecords loop for one owned shard.

Reads from the lease's checkpoint (AFTER_SEQUENCE_NUMBER), else from the position the worker
chose (TRIM_HORIZON for a child whose parent was read, else ``starting_position``). Each page
is buffered into batches of ``max_records`` (waiting up to ``max_window_s`` for a batch to
fill, like Lambda's batching window); each batch is dispatched to every route and then
checkpointed, conditional on still holding the lease (a pipeline's batches of one page with
one write: runtime/checkpoints.py). An expired iterator is re-acquired
after the last sequence number read (buffered records are not read twice). Empty pages back
off between a floor and a ceiling. The shard ends when GetRecords returns no
``NextShardIterator``: it is checkpointed as finished and the lease is released.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import structlog
from tenacity import (
    RetryCallState,
)

from processor.core.records import StreamRecord
from processor.core.reorder import ReorderWindow
from processor.errors import (
    IteratorExpiredError,
    LeaseLostError,
    ShardEndNotCheckpointed,
    ShutdownRequested,
    TrimmedDataError,
)
from processor.leases.model import Lease, LeaseStore
from processor.runtime.checkpoints import Coalescer
from processor.runtime.fencing import await_confirmed_lease
from processor.runtime.rate import RateLimiter
from processor.runtime.settings import ReaderSettings, RecordWindow
from processor.runtime.steps import Steps, drive, transient_steps
from processor.runtime.targets import ReaderOutcome, ShardTarget
from processor.runtime.trimmed import first_available, skip_trimmed
from processor.sources.base import Page, StreamSource

__all__ = ["ReaderSettings", "RecordWindow", "ShardEndNotCheckpointed", "ShardReader"]

log = structlog.get_logger()

T = TypeVar("T")


class ShardReader:
    def __init__(
        self,
        *,
        adapter: StreamSource,
        stream_arn: str,
        lease: Lease,
        initial_position: str | tuple[str, str | None],
        store: LeaseStore,
        settings: ReaderSettings,
        target: ShardTarget,
        stop: threading.Event,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        window: RecordWindow | None = None,
        rate: RateLimiter | None = None,
    ) -> None:
        self.shard_id = lease.shard_id
        self._clock = clock
        self._window = window
        self._reorder = (
            ReorderWindow(settings.reorder_window_s) if settings.reorder_window_s > 0 else None
        )
        #: batches are prefixes of the arrivals, reordered per key (see core/reorder.py)
        self.reordering = self._reorder is not None
        self._rate = rate
        self._reads = (
            RateLimiter(1 / settings.min_read_interval_s, monotonic=monotonic)
            if (settings.min_read_interval_s > 0)
            else None
        )
        self.lease = lease
        self._adapter = adapter
        self._stream_arn = stream_arn
        if isinstance(initial_position, str):
            initial_position = (initial_position, None)
        self._initial_position: tuple[str, str | None] = initial_position
        self._store = store
        self.target = target
        #: set (with ``stop``) by the worker when a renewal found the lease taken over
        self.lease_lost = False
        self._settings = settings
        self.stop = stop
        self._monotonic = monotonic
        self.last_handled: str | None = lease.checkpoint
        self.last_read: str | None = lease.checkpoint
        self.records_read = 0
        self.last_records_at = monotonic()
        #: when this run started reading: a reader made long before (a child waiting for its
        #: parent, a restart's backoff) is not quiet from the start
        self._reading_since = self.last_records_at
        self.caught_up = False
        self.last_poll_at = monotonic()  # last successful GetRecords (readiness)
        #: how far behind the tip: the source's figure (Kinesis' MillisBehindLatest), else now
        #: minus the creation time of the last record read; 0 when caught up
        self.lag_s = 0.0
        self.handled_time: float | None = None  # creation time of the last record handled
        self.trimmed_skips: list[tuple[str | None, str | None]] = []
        self.stream_retries: Counter[str] = Counter()  # stream-call retries by cause
        self.failure: str | None = None  # fatal: the shard is not read again (trimmed, "fail")
        #: the last unexpected error and how many runs in a row ended with one (reset by a
        #: successful GetRecords); shown by `dsp status` through the lease
        self.last_error: str | None = None
        self.failures = 0
        self.failures_total = 0
        self._lock = threading.Lock()
        self._checkpoints = Coalescer(self._write, monotonic)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self.failures += 1
            self.failures_total += 1

    def _iterator(self) -> str:
        if self.last_read is not None:
            return self._adapter.get_iterator(
                self._stream_arn, self.shard_id, "AFTER_SEQUENCE_NUMBER", self.last_read
            )
        kind, sequence = self._initial_position
        return self._adapter.get_iterator(self._stream_arn, self.shard_id, kind, sequence)

    def _log_stream_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        with self._lock:
            self.stream_retries[type(exc).__name__] += 1
        log.warning(
            "stream_call_retrying",
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(exc),
        )

    def _with_retries(self, call: Callable[[], T]) -> Steps[T]:
        """Transient failures (throttling after botocore's own retries, 5xx) back off here."""
        max_wait_s = self._settings.poll_interval_max_s * 5
        return transient_steps(call, self.stop, max_wait_s, self._log_stream_retry)

    def run(self) -> ReaderOutcome:
        """Read until stopped, finished or failed, in this thread. May be called again after
        FAILED (the worker's restart policy): it resumes after the last handled record."""
        return drive(self.steps(), self.stop)

    def steps(self) -> Steps[ReaderOutcome]:
        """:meth:`run` as a step generator: it yields where it would wait (between polls,
        retries, read budgets), so a pool can run many readers on few threads."""
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        self.last_read = self.last_handled
        self.caught_up = False
        outcome = ReaderOutcome.FAILED
        try:
            outcome = yield from self._run()
        except ShutdownRequested:
            outcome = ReaderOutcome.STOPPED
        except LeaseLostError:
            log.warning("lease_lost", last_handled=self.last_handled)
            self.lease_lost = True
            outcome = ReaderOutcome.LEASE_LOST
        except TrimmedDataError as exc:
            self.failure = str(exc)
            self._failed(exc)
            log.error("shard_stopped_trimmed", error=str(exc), policy="fail")  # noqa: TRY400
            return ReaderOutcome.FAILED
        except Exception as exc:  # reported; the worker restarts the reader
            self._failed(exc)
            log.exception(
                "shard_reader_failed", last_handled=self.last_handled, failures=self.failures
            )
            outcome = ReaderOutcome.FAILED
        finally:
            if outcome is not ReaderOutcome.LEASE_LOST:
                self._checkpoints.flush(quietly=True)
            try:
                self.target.finish(self, outcome)
            except Exception:  # the outcome stands; the failure is logged
                log.exception("shard_processor_finish_failed", outcome=outcome.value)
            structlog.contextvars.unbind_contextvars("shard_id", "sequence_number")
        return outcome

    @property
    def window_state(self) -> str | None:
        """The window states written with the last checkpoint (ADR 0025)."""
        return self.lease.window_state

    @property
    def initial_position(self) -> str:
        """Where this shard starts without a checkpoint: TRIM_HORIZON, LATEST, AT_TIMESTAMP
        or a sequence number (a replay's start)."""
        kind, sequence = self._initial_position
        return sequence if sequence is not None and kind != "AT_TIMESTAMP" else kind

    def commit(
        self,
        sequence_number: str | None,
        *,
        finished: bool = False,
        handled_time: float | None = None,
        window_state: str | None = None,
        coalesce: bool = False,
    ) -> None:
        """Checkpoint: every record up to ``sequence_number`` is handled (``finished``: the
        whole shard), with the window states when given. Raises LeaseLostError when another
        owner holds the lease. ``coalesce``: see processor/runtime/checkpoints.py."""
        self._checkpoints.commit(
            sequence_number, finished, handled_time, window_state, coalesce=coalesce
        )

    def _write(
        self,
        sequence_number: str | None,
        finished: bool,
        handled_time: float | None,
        window_state: str | None,
    ) -> None:
        self.lease = self._store.checkpoint(
            self.lease, sequence_number, finished=finished, window_state=window_state
        )
        with self._lock:
            if sequence_number is not None:
                self.last_handled = sequence_number
                self.handled_time = handled_time

    def _trimmed(self, exc: TrimmedDataError) -> str:
        """Apply ``on_trimmed``: raise (fail) or restart at TRIM_HORIZON (skip). Never silent."""
        lost_after = self.last_read
        first = first_available(self._adapter, self._stream_arn, self.shard_id)
        skip_trimmed(
            exc,
            self.shard_id,
            lost_after=lost_after,
            first=first,
            on_trimmed=self._settings.on_trimmed,
            source=self._adapter,
        )
        with self._lock:
            self.trimmed_skips.append((lost_after, first))
        self.last_read = None
        self._initial_position = ("TRIM_HORIZON", None)
        return self._adapter.get_iterator(self._stream_arn, self.shard_id, "TRIM_HORIZON")

    def _acquire(self) -> Steps[str]:
        try:
            return (yield from self._with_retries(self._iterator))
        except TrimmedDataError as exc:
            return self._trimmed(exc)

    def _run(self) -> Steps[ReaderOutcome]:
        log.info(
            "shard_reader_started", checkpoint=self.last_handled, position=self._initial_position
        )
        settings = self._settings
        self.target.start(self)
        iterator: str = yield from self._acquire()
        self._reading_since = self._monotonic()  # a shard is quiet from here at the earliest
        delay = settings.poll_interval_min_s
        buffer: list[StreamRecord] = []
        window_started = 0.0
        while not self.stop.is_set():
            if self._checkpoints.due:  # handled a while ago: written before the next read
                self._checkpoints.flush()
            page = yield from self._get_page(iterator)
            if isinstance(page, str):  # expired or trimmed: a fresh iterator
                iterator = page
                continue
            records, window_ended = self._observe(page, buffered=bool(buffer))
            if page.records:
                delay = settings.poll_interval_min_s
            ended = page.next_iterator is None or window_ended
            if self._reorder is not None:
                if ended:  # the shard is drained: nothing may stay held
                    buffer = yield from self._drain_reorder(buffer, records)
                    records = []
                else:
                    self._reorder.add(records, self._monotonic())
                    room = max(settings.max_records - len(buffer), 0)
                    records = self._reorder.release(self._monotonic(), limit=room)
            if records:
                if not buffer:
                    window_started = self._monotonic()
                buffer.extend(records)
            window_over = self._monotonic() - window_started >= settings.max_window_s
            if buffer and (ended or window_over or len(buffer) >= settings.max_records):
                buffer = yield from self._handle(buffer, flush=ended or window_over)
                window_started = self._monotonic()
            if ended:
                self._finish_shard()
                return ReaderOutcome.FINISHED
            iterator = page.next_iterator  # type: ignore[assignment]
            if not page.records:  # caught up: what is handled is written before the wait
                self._checkpoints.flush()
                yield from self._at_tip(delay, buffer, window_started)
                delay = min(delay * 2, self._poll_cap())
        return ReaderOutcome.STOPPED

    def _poll_cap(self) -> float:
        """The longest wait between polls of an empty shard: the idle interval once the
        shard has had no records for ``idle_after_s`` since this run started reading."""
        settings = self._settings
        idle = settings.idle_poll_interval_s
        quiet_since = max(self.last_records_at, self._reading_since)
        if idle is not None and self._monotonic() - quiet_since >= settings.idle_after_s:
            return idle
        return settings.poll_interval_max_s

    def _get_page(self, iterator: str) -> Steps[Page | str]:
        """The next page, or a fresh iterator when this one expired or its data was trimmed."""
        settings = self._settings
        if self._reads is not None:  # the shard's read budget (Kinesis: 5 calls a second)
            wait = self._reads.reserve(1)
            if wait > 0:
                yield wait
        try:
            return (
                yield from self._with_retries(
                    lambda: self._adapter.get_records(
                        iterator, limit=settings.get_records_limit, shard_id=self.shard_id
                    )
                )
            )
        except IteratorExpiredError:
            log.info("iterator_expired", resume_after=self.last_read)
            return (yield from self._acquire())
        except TrimmedDataError as exc:
            return self._trimmed(exc)

    def _observe(self, page: Page, *, buffered: bool) -> tuple[list[StreamRecord], bool]:
        """Bookkeeping of a page (poll time, lag, malformed records, position); the records
        to buffer (a replay window may cut them) and whether the window ended."""
        self.last_poll_at = self._monotonic()
        if self.last_error is not None:
            with self._lock:
                self.last_error, self.failures = None, 0
        if page.records:
            created = page.records[-1].approximate_creation_time
            self.lag_s = max(0.0, self._clock() - created.timestamp()) if created else 0.0
            self.last_read = page.records[-1].sequence_number
            self.caught_up = False
        elif not buffered:
            self.lag_s = 0.0
        if page.millis_behind is not None:  # the source knows better (Kinesis)
            self.lag_s = page.millis_behind / 1000
        if page.malformed:
            self.target.reject_malformed(page.malformed, self.shard_id)
        if page.records and self._window is not None:
            return self._window(page.records)
        return page.records, False

    def _finish_shard(self) -> None:
        """The shard is drained: its end must be checkpointed before its lease is released."""
        if not self.target.shard_ended(self):
            raise ShardEndNotCheckpointed(
                f"shard {self.shard_id} ended but its end was not checkpointed"
            )
        self._store.release(self.lease)
        log.info("shard_finished", last_handled=self.last_handled, records=self.records_read)

    def _at_tip(
        self, delay: float, buffer: list[StreamRecord], window_started: float
    ) -> Steps[None]:
        """An empty page: report an empty batch if the processor wants one, then wait before
        the next poll, never past the end of the batching window or of the reorder window."""
        held = len(self._reorder) if self._reorder is not None else 0
        self.caught_up = not buffer and not held
        if not buffer and not held and self.target.wants_empty_batches:
            yield from await_confirmed_lease(
                lambda: self.lease, self._clock, self._settings.lease_fence_s, self.stop
            )
            self.target.process(self, [])
        wait = delay
        if buffer:
            elapsed = self._monotonic() - window_started
            wait = min(delay, max(0.0, self._settings.max_window_s - elapsed))
        if held:
            wait = min(wait, self._settings.reorder_window_s)
        yield wait

    def _drain_reorder(
        self, buffer: list[StreamRecord], records: list[StreamRecord]
    ) -> Steps[list[StreamRecord]]:
        """At a shard's end: release everything held, one prefix (at most a batch) at a
        time, each dispatched and checkpointed before the next."""
        assert self._reorder is not None
        self._reorder.add(records, self._monotonic())
        while len(self._reorder):
            room = max(self._settings.max_records - len(buffer), 1)
            buffer.extend(self._reorder.release(self._monotonic(), limit=room, flush=True))
            buffer = yield from self._handle(buffer, flush=True)
        return buffer

    def _handle(self, records: list[StreamRecord], *, flush: bool) -> Steps[list[StreamRecord]]:
        """Dispatch full batches (and, with ``flush``, the rest); return what is left."""
        size = self._settings.max_records
        while len(records) >= size or (flush and records):
            batch, records = records[:size], records[size:]
            last = batch[-1].sequence_number
            structlog.contextvars.bind_contextvars(sequence_number=last)
            yield from await_confirmed_lease(
                lambda: self.lease, self._clock, self._settings.lease_fence_s, self.stop
            )
            if self._rate is not None:  # --rate: records per second across all readers
                wait = self._rate.reserve(len(batch))
                if wait > 0:
                    yield wait
            self.target.process(self, batch)
            with self._lock:
                self.records_read += len(batch)
                self.last_records_at = self._monotonic()
            if self.stop.is_set():
                raise ShutdownRequested("stop requested between batches")
        return records
