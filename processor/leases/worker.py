"""Lease acquisition, a reader per owned shard on a bounded pool of threads, renewal,
graceful shutdown.

The main loop (one thread) discovers shards, creates missing lease items, takes leases of
ready shards (lineage: children only after their parents finished), starts a
:class:`~processor.sources.reader.ShardReader` per owned shard in the reader pool
(:class:`~processor.sources.pool.StepPool`: at most ``reader_threads`` threads, whatever the
number of shards), renews leases, and notices
when every owned shard has been idle long enough (``--stop-when-idle``). On stop it tells
readers to finish their in-flight batch, waits up to the shutdown deadline, and releases the
leases it still holds so another replica can take over at once.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import structlog

from processor.core._rate import RateLimiter
from processor.core._waiting import Steps
from processor.core.dispatch import Dispatcher
from processor.errors import ProcessorError, StreamNotFoundError
from processor.leases.balancing import plan
from processor.leases.cleanup import lease_states, plan_cleanup, shards_to_create
from processor.leases.model import Lease, LeaseStore
from processor.leases.readers import (
    Running,
    RunSummary,
    WorkerSettings,
    renew_one,
    restart_steps,
    snapshot,
)
from processor.leases.snapshot import WorkerSnapshot, readiness
from processor.sources.base import StreamSource
from processor.sources.lineage import Shard
from processor.sources.pool import StepPool, WakingEvent
from processor.sources.processors import DispatchProcessor, ReaderOutcome, ShardProcessor
from processor.sources.reader import RecordWindow, ShardReader
from processor.sources.start import created_since

__all__ = ["PositionFor", "RunSummary", "Worker", "WorkerSettings", "run_workers", "shut_down"]

#: Where a shard without a checkpoint starts: (iterator type, sequence number), or None to
#: skip it (replay ranges). Without one: lineage, then ``starting_position``.
PositionFor = Callable[[Shard | None, Lease], tuple[str, str | None] | None]

log = structlog.get_logger()

#: leases renewed at once (one slow renewal must not delay the others)
RENEWAL_THREADS = 16


class Worker:
    def __init__(
        self,
        *,
        adapter: StreamSource,
        stream_arn: str,
        store: LeaseStore,
        dispatcher_for: Callable[[threading.Event], Dispatcher],
        settings: WorkerSettings,
        position_for: PositionFor | None = None,
        window: RecordWindow | None = None,
        rate: RateLimiter | None = None,
        only_shards: frozenset[str] | None = None,
        processor_for: Callable[[Lease, threading.Event], ShardProcessor] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        stream: str = "default",
        pool: Callable[[], StepPool] | None = None,
    ) -> None:
        #: the stream's name among the process's streams (logs, metrics, `dsp status`)
        self.stream = stream
        #: the reader pool this worker shares with other streams' workers (their owner closes
        #: it); None: its own, started with the first reader
        self._shared_pool = pool
        self._adapter = adapter
        self._stream_arn = stream_arn
        self._store = store
        self._dispatcher_for = dispatcher_for
        #: what a lease's records go to: our pipeline (default) or, say, a MultiLang child
        self._processor_for = processor_for or (
            lambda lease, stop: DispatchProcessor(dispatcher_for(stop))
        )
        self.settings = settings
        self._position_for = position_for
        self._window = window
        self._rate = rate
        self._only_shards = only_shards
        self._clock = clock
        self._monotonic = monotonic
        self._running: dict[str, Running] = {}
        self._shards: dict[str, Shard] = {}
        self._stopped: set[str] = set()  # shards this process will not take again (trimmed)
        self._takeable = 0  # ready leases nobody holds, at the last scan (idle detection)
        #: ready shards left without a live owner after the last scan, and since when
        self._unowned = 0
        self._unowned_since: float | None = None
        self._take_soon = False
        self._expiring = 0  # ready leases of an owner that stopped renewing (idle detection)
        self._renewals = ThreadPoolExecutor(
            max_workers=RENEWAL_THREADS, thread_name_prefix="dsp-renew"
        )
        self.last_tick = monotonic()
        self.summary = RunSummary()
        self._scanned = False  # a lease scan happened (readiness of a replica with no lease)
        self._next_discovery = self._next_take = self._next_renewal = 0.0
        self._idle_started: float | None = None
        #: sees each wait before a reader's restart (tests record the backoff)
        self._on_restart_wait: Callable[[float], None] | None = None
        self._pool: StepPool | None = None  # started with the first reader
        self._next_cleanup = 0.0  # the first discovery cleans up what an older run left
        self._lease_states: dict[str, int] = {}
        self._scan_items = 0

    # -- discovery and leases -----------------------------------------------------------------

    def _discover(self, *, cleanup: bool = False) -> None:
        """List the shards and give the new ones leases; with ``cleanup``, a cleanup pass on
        the same views. The leases are read *before* the stream is listed: a lease read then
        belongs to a shard that was in the listing unless it left the stream (ADR 0024)."""
        leases = self._store.list_leases()
        description = self._adapter.describe(self._stream_arn)
        self._shards = {s.shard_id: s for s in description.shards}
        missing, from_start = shards_to_create(description.shards, leases)
        if missing:
            known = {lease.shard_id for lease in leases}
            self._store.create_missing(missing, known, from_start=from_start)
        log.debug("shards_discovered", shards=len(self._shards), new=len(missing))
        if cleanup:
            self._cleanup(leases, description.shards)

    def _cleanup(self, leases: list[Lease], listed: Sequence[Shard]) -> None:
        """One cleanup pass (ADR 0024): conditional deletes, bounded, repeatable; a failed one
        is tried again by a later pass and never stops the worker."""
        todo = plan_cleanup(
            leases,
            listed,
            on_trimmed=self.settings.reader.on_trimmed,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            limit=self.settings.cleanup_max_deletes,
        )
        self._lease_states = todo.states
        if todo.trimmed_unread:
            log.error(
                "leases_trimmed_unread",
                count=len(todo.trimmed_unread),
                shards=[lease.shard_id for lease in todo.trimmed_unread][:20],
                checkpoints=[lease.checkpoint for lease in todo.trimmed_unread][:20],
                policy=self.settings.reader.on_trimmed,
                fix=(
                    "these shards left the stream before they were read to the end: their "
                    'remaining records are lost. on_trimmed = "skip" deletes their leases so '
                    'their children are read; "fail" keeps them and blocks the children'
                ),
            )
        marked_all = all(
            self._store_call(self._store.mark_from_start, c) for c in todo.mark_from_start
        )
        deletions = [d for d in todo.delete if marked_all or d.reason != "left_stream"]
        deleted: dict[str, int] = {}
        failed = 0
        for deletion in deletions:
            outcome = self._store_call(self._store.delete, deletion.lease)
            if outcome is None:
                failed += 1
            elif outcome:
                deleted[deletion.reason] = deleted.get(deletion.reason, 0) + 1
                self._stopped.discard(deletion.lease.shard_id)
        for reason, count in deleted.items():
            self.summary.leases_deleted[reason] = self.summary.leases_deleted.get(reason, 0) + count
        if deleted or failed or todo.more:
            log.info(
                "leases_cleaned",
                deleted=sum(deleted.values()),
                by_reason=deleted,
                failed=failed,
                left_for_next_pass=todo.more,
                leases_before=len(leases),
            )
        # shards this process will not take again are forgotten once their lease is gone
        self._stopped &= {lease.shard_id for lease in leases}

    def _store_call(self, call: Callable[[Lease], bool], lease: Lease) -> bool | None:
        """A cleanup write; None when it failed (logged, retried by a later pass)."""
        try:
            return call(lease)
        except ProcessorError as exc:
            log.warning("lease_cleanup_failed", shard_id=lease.shard_id, error=str(exc))
            return None

    def _discover_children(self, shard_id: str) -> None:
        """A shard ended: find its children at once (ShardFilter) instead of a full describe.

        Needed only when the shard was open at the last full discovery: a describe that saw it
        closed listed its children too (they are created when the parent closes).
        """
        known_shard = self._shards.get(shard_id)
        if known_shard is None or known_shard.is_closed:
            return
        children = self._adapter.child_shards(self._stream_arn, shard_id)
        leases = self._store.list_leases()
        for child in children:
            self._shards[child.shard_id] = child
        missing, from_start = shards_to_create(children, leases)
        self._store.create_missing(
            missing, {lease.shard_id for lease in leases}, from_start=from_start
        )
        log.info("child_shards_found", parent=shard_id, children=[c.shard_id for c in children])

    def _take_leases(self) -> None:
        leases = self._store.list_leases()
        self._scan_items = len(leases)
        scan = plan(
            leases,
            self._shards.values(),
            owner=self.settings.owner,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            renew_interval_s=self.settings.renew_interval_s,
            room=self._room(),
            excluded=self._stopped,
            only=self._only_shards,
        )
        self._scanned = True
        self._takeable, self._expiring = scan.takeable, scan.expiring
        self._lease_states = lease_states(
            leases,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            trimmed=self._lease_states.get("trimmed_unread", 0),
        )
        taken_before = self.summary.leases_taken
        steal = scan.steal
        if steal is not None and self._store.request_handoff(steal, self.settings.owner):
            self.summary.leases_stolen += 1
            log.info("lease_handoff_requested", shard_id=steal.shard_id, from_owner=steal.owner)
        finished = set(scan.finished)
        for observed in scan.take:
            if observed.shard_id in self._running:
                continue
            lease = self._store.take(observed, self.settings.owner)
            if lease is None:
                continue  # another replica was faster
            self.summary.leases_taken += 1
            log.info(
                "lease_taken",
                shard_id=lease.shard_id,
                previous_owner=observed.owner,
                lease_counter=lease.counter,
                checkpoint=lease.checkpoint,
            )
            self._start_reader(lease, finished)
        self._report_unowned(scan.takeable - (self.summary.leases_taken - taken_before))

    def _room(self) -> int:
        """How many more leases this process may take: all it can, unless capped."""
        if self.settings.max_leases is None:
            return len(self._shards) + 1  # more than there can be to take
        return self.settings.max_leases - len(self._running)

    def _report_unowned(self, unowned: int) -> None:
        """Ready shards that stay without a live owner longer than a lease timeout plus a scan
        are unread changes that the retention will drop: a WARNING every scan, and /readyz
        says so (the ``dsp_shards_unowned`` gauge shows it too)."""
        now = self._monotonic()
        if unowned <= 0:
            self._unowned_since, self._unowned = None, 0
            return
        if self._unowned_since is None:
            self._unowned_since = now
        self._unowned = unowned
        waited = now - self._unowned_since
        if waited > self.settings.lease_timeout_s + self.settings.lease_scan_interval_s:
            log.warning(
                "shards_unowned",
                count=unowned,
                for_s=round(waited, 1),
                max_leases=self.settings.max_leases,
                fix="raise checkpoints.max_leases, or add replicas: unread changes are lost "
                "once they pass the stream's retention",
            )

    def _start_reader(self, lease: Lease, finished: set[str]) -> None:
        shard = self._shards.get(lease.shard_id)
        parents = shard.parent_shard_ids if shard else lease.parent_shard_ids
        # A child whose parent we read must start at its beginning, whatever the configured
        # starting position: otherwise the records between the split and now would be lost.
        position: tuple[str, str | None] = (
            ("TRIM_HORIZON", None)
            if lease.from_start or any(p in finished for p in parents)
            else (self.settings.starting_position, None)
        )
        window = self._window
        at = self.settings.starting_timestamp
        live = self._position_for is None  # a replay has its own start and window
        if live and self.settings.starting_position == "AT_TIMESTAMP" and at is not None:
            # every shard without a checkpoint skips what was made before the time (a child
            # of a read parent included: its earlier records are not wanted either)
            if lease.checkpoint is None and self.settings.native_at_timestamp:
                position = ("AT_TIMESTAMP", repr(at))
            elif lease.checkpoint is None:
                position = ("TRIM_HORIZON", None)
                window = created_since(at, self.settings.timestamp_granularity_s)
        if self._position_for is not None:
            chosen = self._position_for(shard, lease)
            if chosen is None:  # nothing of this shard is wanted (replay range)
                done = self._store.checkpoint(lease, lease.checkpoint, finished=True)
                self._store.release(done)
                self.summary.shards_finished += 1
                self._take_soon = True  # its children may be ready now
                return
            position = chosen
        stop = WakingEvent()
        reader = ShardReader(
            adapter=self._adapter,
            stream_arn=self._stream_arn,
            lease=lease,
            initial_position=position,
            store=self._store,
            processor=self._processor_for(lease, stop),
            settings=replace(self.settings.reader, lease_fence_s=self.settings.lease_timeout_s / 2),
            stop=stop,
            monotonic=self._monotonic,
            clock=self._clock,
            window=window,
            rate=self._rate,
        )
        running = Running(reader=reader)
        if self._pool is None:
            shared = self._shared_pool
            self._pool = shared() if shared else StepPool(self.settings.reader_threads)
        running.task = self._pool.submit(
            _bound(self.stream, restart_steps(running, self.settings, self._on_restart_wait)),
            name=f"reader-{self.stream}-{lease.shard_id}",
            stop=stop,
        )
        self._running[lease.shard_id] = running

    def _reap(self) -> bool:
        """Forget readers that ended; True when a shard finished (children may be ready)."""
        any_finished = False
        for shard_id, running in list(self._running.items()):
            if running.is_alive():
                continue
            del self._running[shard_id]
            outcome = self.summary.absorb(running)
            if outcome is ReaderOutcome.FINISHED:
                self.summary.shards_finished += 1
                any_finished = True
                try:
                    self._discover_children(shard_id)
                except ProcessorError as exc:
                    log.warning("child_discovery_failed", shard_id=shard_id, error=str(exc))
            elif outcome is ReaderOutcome.LEASE_LOST:
                self.summary.leases_lost += 1
            elif outcome is ReaderOutcome.STOPPED and running.handoff:
                self.summary.leases_handed_off += 1
                self._release(running.reader.lease, handoff=True)
            elif outcome is ReaderOutcome.FAILED:
                if running.reader.failure:  # trimmed data under on_trimmed = "fail"
                    self._stopped.add(shard_id)
                self._release(running.reader.lease)
        return any_finished

    def _renew(self) -> None:
        """Renew every owned lease, in parallel: one slow call must not delay the others."""
        running = list(self._running.values())
        if len(running) <= 1:
            for item in running:
                renew_one(self._store, item, self.settings.owner)
            return
        owner = self.settings.owner
        list(self._renewals.map(lambda item: renew_one(self._store, item, owner), running))

    def _release(self, lease: Lease, *, handoff: bool = False) -> None:
        try:
            self._store.release(lease, handoff=handoff)
        except ProcessorError as exc:
            log.warning("lease_release_failed", shard_id=lease.shard_id, error=str(exc))

    # -- health -------------------------------------------------------------------------------

    def state(self) -> WorkerSnapshot:
        """A snapshot for metrics: counters, and per owned shard its lag and last poll."""
        return snapshot(
            self.summary,
            list(self._running.values()),
            takeable=self._takeable,
            now=self._monotonic(),
            reader_threads=self._pool.size if self._pool else self.settings.reader_threads,
            pool=self._pool,
            leases=self._lease_states,
            lease_scan_items=self._scan_items,
        )

    def alive(self) -> bool:
        """The main loop ticked recently (it ticks every ``tick_s``)."""
        return self._monotonic() - self.last_tick < max(10.0, 20 * self.settings.tick_s)

    def ready(self, max_stall_s: float) -> tuple[bool, str]:
        """Leases held, and every owned shard polled successfully within ``max_stall_s``; the
        body also names ready shards left unowned for longer than a lease timeout plus a scan
        (ADR 0023: that does not make the process unready)."""
        ok, why = readiness(self.state(), scanned=self._scanned, max_stall_s=max_stall_s)
        if self._unowned_since is not None:
            waited = self._monotonic() - self._unowned_since
            if waited > self.settings.lease_timeout_s + self.settings.lease_scan_interval_s:
                why += (
                    f"; WARNING: {self._unowned} ready shard(s) unowned for {waited:.0f} s "
                    f"(checkpoints.max_leases = {self.settings.max_leases}): raise it or add "
                    "replicas"
                )
        return ok, why

    # -- idle ---------------------------------------------------------------------------------

    def _idle_for(self) -> float | None:
        """Seconds since the last record on any owned shard, or None while one is busy."""
        readers = [r.reader for r in self._running.values()]
        if not all(r.caught_up for r in readers):
            return None
        return self._monotonic() - max(r.last_records_at for r in readers)

    # -- main loop ----------------------------------------------------------------------------

    def run(self, *, stop: threading.Event, stop_when_idle: float | None = None) -> RunSummary:
        run_workers([self], stop=stop, stop_when_idle=stop_when_idle)
        return self.summary

    def now(self) -> float:
        """The worker's monotonic clock (injectable: tests never sleep for real)."""
        return self._monotonic()

    def begin(self) -> None:
        """Before the first tick: the lease table exists."""
        self._store.ensure_table()
        log.info(
            "worker_started",
            owner=self.settings.owner,
            stream=self.stream,
            stream_arn=self._stream_arn,
        )

    def tick(self, now: float) -> None:
        """One turn of the main loop (see :func:`run_workers`)."""
        self.last_tick = now
        self._tick(now)

    def _tick(self, now: float) -> None:
        """One turn of the main loop: reap ended readers, then whatever is due of discovery,
        a lease scan and renewals."""
        if self._reap():
            self._next_take = now  # children of a finished shard may be ready
        cleanup_every = self.settings.cleanup_interval_s
        cleanup = cleanup_every is not None and now >= self._next_cleanup
        if now >= self._next_discovery or cleanup:
            try:
                self._discover(cleanup=cleanup)
            except StreamNotFoundError:
                raise
            except ProcessorError as exc:
                log.warning("shard_discovery_failed", error=str(exc))
            self._next_discovery = now + self.settings.discovery_interval_s
            if cleanup_every is not None and cleanup:
                self._next_cleanup = now + cleanup_every
        if self._take_soon:
            self._take_soon = False
            self._next_take = now
        if now >= self._next_take:
            try:
                self._take_leases()
            except ProcessorError as exc:
                log.warning("lease_scan_failed", error=str(exc))
            scan_every = min(self.settings.renew_interval_s, self.settings.lease_scan_interval_s)
            self._next_take = now + scan_every
        if now >= self._next_renewal:
            self._renew()
            self._next_renewal = now + self.settings.renew_interval_s

    def idle(self, now: float) -> float | None:
        """How long nothing was there to read, or None while something is (or soon is)."""
        if self._takeable or self._take_soon or self._expiring:
            self._idle_started = None
            return None
        if self._running:
            self._idle_started = None
            return self._idle_for()
        # nothing to read (yet): idle since we first saw that
        self._idle_started = self._idle_started or now
        return now - self._idle_started

    def stop_readers(self) -> None:
        """Shutdown, first step: every reader finishes its in-flight batch and checkpoints."""
        for running in self._running.values():
            running.reader.stop.set()

    def draining(self) -> list[Running]:
        """The readers still running (shutdown waits for them, renewing their leases)."""
        return [r for r in self._running.values() if r.is_alive()]

    def renew_due(self, now: float) -> float:
        """Renew the leases if due; when the next renewal is due."""
        if now >= self._next_renewal:
            self._renew()
            self._next_renewal = now + self.settings.renew_interval_s
        return self._next_renewal

    def finish(self) -> None:
        """Shutdown, last step: release the leases of readers that stopped, log the end."""
        for shard_id, running in self._running.items():
            if running.is_alive():
                log.error(
                    "reader_did_not_stop",
                    shard_id=shard_id,
                    stream=self.stream,
                    deadline_s=self.settings.shutdown_deadline_s,
                )
                continue
            if running.outcome is ReaderOutcome.STOPPED:
                self._release(running.reader.lease)
        self._reap()
        self._renewals.shutdown(wait=False)
        if self._pool is not None and self._shared_pool is None:
            self._pool.close()
        log.info(
            "worker_stopped",
            stream=self.stream,
            records_read=self.summary.records_read,
            shards_finished=self.summary.shards_finished,
            leases_lost=self.summary.leases_lost,
            peak_rss_mb=_peak_rss_mb(),
        )


def run_workers(
    workers: Sequence[Worker],
    *,
    stop: threading.Event,
    stop_when_idle: float | None = None,
) -> None:
    """The main loop of one or several streams' workers (one thread): tick each in turn until
    ``stop`` is set or, with ``stop_when_idle``, every stream has been idle that long; then
    drain, checkpoint and release (:func:`shut_down`)."""
    monotonic = workers[0].now
    for worker in workers:
        worker.begin()
    tick_s = min(w.settings.tick_s for w in workers)
    try:
        while not stop.is_set():
            now = monotonic()
            for worker in workers:
                worker.tick(now)
            if stop_when_idle is not None:
                idles = [w.idle(now) for w in workers]
                idle = (
                    None
                    if any(i is None for i in idles)
                    else min(i for i in idles if i is not None)
                )
                if idle is not None and idle >= stop_when_idle:
                    log.info("worker_idle", idle_s=round(idle, 2))
                    break
            stop.wait(tick_s)
    finally:
        shut_down(workers)


def shut_down(workers: Sequence[Worker]) -> None:
    """Drain, checkpoint, then release: readers finish their batch and checkpoint while their
    leases keep being renewed (a slow drain must not let another replica take a shard
    mid-batch); leases are released once their reader stopped. Every stream's readers stop
    at once and share the deadline."""
    monotonic = workers[0].now
    for worker in workers:
        worker.stop_readers()
    deadline = monotonic() + max(w.settings.shutdown_deadline_s for w in workers)
    while True:
        now = monotonic()
        alive = [r for w in workers for r in w.draining()]
        if not alive or now >= deadline:
            break
        next_renewal = min(w.renew_due(now) for w in workers)
        task = alive[0].task
        assert task is not None
        task.join(max(0.0, min(deadline, next_renewal) - now))
    for worker in workers:
        worker.finish()


def _bound(stream: str, steps: Steps[None]) -> Steps[None]:
    """``steps`` with the stream's name in every log line they write (a pooled task runs in
    a context of its own, so the binding stays the reader's)."""
    structlog.contextvars.bind_contextvars(stream=stream)
    yield from steps


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ru_maxrss survives exec (it would report
    the parent's peak if that was larger), so VmHWM of this address space is read first."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
